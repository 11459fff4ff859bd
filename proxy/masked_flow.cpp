#include "proxy/masked_flow.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "masking/exfiltration.hpp"
#include "protocol/bytes.hpp"
#include "protocol/encode.hpp"
#include "protocol/sqlstate.hpp"
#include "proxy/logging.hpp"

namespace pgveil::proxy {

namespace msg = protocol::msg;

namespace {

// Fails on the server at parse analysis (no FROM: the column cannot exist), so that the server
// itself produces the error in the right place of the stream and moves the transaction to its
// failed state, as the refused statement would have; pgveil then replaces the error text.
constexpr const char* kRefusedSql = "SELECT \"pgveil: statement refused\"";

std::string encodeErrorMessage(const std::string& message, const std::string& rule) {
  std::string out;
  std::string hint = "The rule " + rule + " of pgveil's masking policy applies to this role.";
  protocol::appendErrorResponse(out, {.severity = "ERROR", .sqlstate = protocol::sqlstate::kInsufficientPrivilege,
                                      .message = message, .hint = hint});
  return out;
}

}  // namespace

MaskedFlow::MaskedFlow(SharedState& shared, Worker& worker, std::shared_ptr<const Rules> rules,
                       std::shared_ptr<const masking::Policy> policy, std::shared_ptr<const masking::Catalog> catalog,
                       SessionIdentity identity)
    : shared_(shared),
      worker_(worker),
      rules_(std::move(rules)),
      policy_(std::move(policy)),
      catalog_(std::move(catalog)),
      identity_(std::move(identity)) {
  applyRules();
  contextKey_ = masking::AnalysisCache::contextKey(catalog_->generation(), searchPathKey_);
}

MaskedFlow::~MaskedFlow() { flushCounts(); }

// Derives what this session checks from the current rules and policy.
void MaskedFlow::applyRules() {
  masked_ = !policy_->unmasked();
  const auto& cfg = *rules_->config;
  limits_ = &config::limitsFor(cfg, policy_->role());
  if (counters_) flushCounts();  // to the role the rows were counted for
  counters_ = &shared_.countersFor(policy_->role());
  canaries_ = rules_->canaries && !cfg.canaries.exempt.count(policy_->role()) ? rules_->canaries.get() : nullptr;
  exempt_ = rules_->exfiltrationExempt(policy_->role(), identity_.user);
  distinctOn_ = !exempt_ && cfg.exfiltration.distinctRows != config::RuleAction::Off;
  classification_ = shared_.classificationFor(*rules_, catalog_);
  windowKey_ = policy_->role();
  // Per client address: the host part only (a client opens many connections from many ports).
  auto host = identity_.clientAddr;
  auto colon = host.rfind(':');
  if (colon != std::string::npos) host.resize(colon);
  clientWindowKey_ = policy_->role() + "\n" + host;
}

bool MaskedFlow::monitorMode() const {
  return rules_->config->monitor || policy_->monitor();
}

bool MaskedFlow::clientNeedsWhole(char type) const {
  // Everything but COPY data from the client is inspected.
  return type != msg::kCopyData;
}

bool MaskedFlow::serverNeedsWhole(char type) const {
  // Rows are counted, searched for canaries or dropped after a breach: seen whole.
  if ((type == msg::kDataRow || type == msg::kCopyData) && (limits_->any() || canaries_ || discardUntilReady_ || distinctOn_)) {
    return true;
  }
  if (type == msg::kDataRow) {
    if (!expects_.empty() && expects_.front().kind == Expect::Execute) {
      const auto& p = expects_.front().portalState;
      return !p || !p->planned || p->plan.any;
    }
    return !simplePlanned_ || simplePlan_.any;
  }
  if (type == msg::kCopyData) return !copying_ || copyPlan_.any;
  return true;
}

bool MaskedFlow::refreshSnapshot() {
  // Sessions pick up a newer catalog snapshot and newer rules (SIGHUP) between statements. The
  // service is asked only when it stored a snapshot since, or a second has passed (its answer
  // also requests the periodic refresh of an old snapshot).
  const auto published = shared_.catalogs->published();
  const auto now = std::chrono::steady_clock::now();
  if (!catalog_ || published != catalogPublished_ || now >= catalogRecheck_) {
    catalogPublished_ = published;
    catalogRecheck_ = now + std::chrono::seconds(1);
    auto current = shared_.catalogs->current(identity_.database);
    if (current && current != catalog_) {
      catalog_ = current;
      classification_ = shared_.classificationFor(*rules_, catalog_);
      contextKey_ = masking::AnalysisCache::contextKey(catalog_->generation(), searchPathKey_);
    }
  }
  if (shared_.rulesGeneration.load(std::memory_order_acquire) == rules_->generation) return true;
  // New rules take effect between transactions: the statements, portals and result plans of an
  // open transaction were made under the old ones.
  if (txStatus_ != 'I') return true;
  auto next = shared_.rules();
  auto policy = next->effective(next->policies->forRole(identity_.user, catalog_.get(), identity_.certificateCn));
  const std::string oldRole = policy_->role();
  const std::string newRole = policy->role();
  auto endSession = [&](const char* why) {
    spdlog::warn("session {} ended by a configuration reload: {} (user \"{}\", role policy {} -> {})", identity_.sessionId,
                 why, logSafe(identity_.user), oldRole, newRole);
    fatalCode_ = protocol::sqlstate::kAdminShutdown;
    fatalMessage_ = "terminating connection due to administrator command: pgveil's configuration was reloaded and "
                    "this session cannot continue under the new rules; reconnect";
    return false;
  };
  // What was allowed under an unmasked policy (startup parameters, SET of how SQL is read,
  // statements prepared without the gate) cannot be checked after the fact.
  if (policy->role() != policy_->role() || (!masked_ && !policy->unmasked())) return endSession("the role's policy changed");
  rules_ = std::move(next);
  policy_ = std::move(policy);
  applyRules();
  if (!masked_) return true;
  // Statements prepared earlier are gated again under the new rules. Portals and cursors are
  // gone between transactions, unless the client pipelined past the end of the last one.
  if (!portals_.empty() || !cursors_.empty()) return endSession("portals or cursors were open");
  for (const auto* prepared : {&statements_, &sqlPrepared_}) {
    for (const auto& [name, p] : *prepared) {
      if (p.analysis && !masking::gate(*p.analysis, *policy_, *classification_, *catalog_).allowed) {
        return endSession("a prepared statement is no longer allowed");
      }
    }
  }
  return true;
}

std::shared_ptr<const masking::Analysis> MaskedFlow::analyze(std::string_view sql) {
  auto& cache = *worker_.analysisCache;
  // The same statement with other constants shares a literal-insensitive analysis (the simple
  // protocol's usual traffic). Buffers are per thread: no allocation once warm.
  // The shape is computed only when the exact text missed.
  thread_local std::string shape;
  thread_local std::vector<masking::SqlLiteral> literals;
  bool shaped = false;
  auto shapeOf = [&]() -> const std::string* {
    shaped = sql.size() <= shared_.analyzer->options().maxQueryBytes && masking::literalShape(sql, shape, literals) &&
             !literals.empty();
    return shaped ? &shape : nullptr;
  };
  auto a = cache.find(sql, contextKey_, shapeOf);
  if (!a) {
    // search_path is taken as unknown: unqualified names resolve in every schema (conservative).
    masking::AnalyzeContext ctx{catalog_.get(), searchPath_};
    a = shared_.analyzer->analyze(sql, ctx, shaped ? &literals : nullptr);
    cache.insert(sql, contextKey_, a);
    if (a->literalInsensitive) cache.insertShape(shape, contextKey_, a);
  }
  // A statement that changes search_path: what is sent from now on, and the statements after it
  // in the same string, are read with the path unknown until the server confirms the new one.
  if (!searchPath_.empty() && changesSearchPath(*a)) {
    setSearchPath({});
    if (a->statements.size() > 1) return analyze(sql);
  }
  // A relation the snapshot does not know (perhaps created since it was loaded): ask for a fresh
  // one (at most one such load every 10 s per database). Until this session picks it up, the
  // statement counts as reading classified data.
  for (const auto& s : a->statements) {
    if (s.unknownRelations) {
      shared_.catalogs->requestRefreshForUnknownRelation(identity_.database);
      break;
    }
  }
  return a;
}

bool MaskedFlow::changesSearchPath(const masking::Analysis& a) {
  for (const auto& s : a.statements) {
    bool set = s.kind == masking::StatementKind::Set || s.kind == masking::StatementKind::Reset;
    if (set && (s.parameter == "search_path" || s.parameter == "all")) return true;
    if (s.kind == masking::StatementKind::Other && s.nodeType == "DiscardStmt") return true;
  }
  return false;
}

// Called when the server confirms a statement (CommandComplete): only then does a PREPARE,
// DECLARE, DEALLOCATE, CLOSE, DISCARD or SET take effect.
void MaskedFlow::trackStatement(const std::shared_ptr<const masking::Analysis>& a, const masking::StatementAnalysis& s) {
  {
    switch (s.kind) {
      // SQL and protocol-level prepared statements share one namespace on the server.
      case masking::StatementKind::Prepare:
        forgetPrepared(s.name);
        sqlPrepared_[s.name] = {a, s.inner ? s.inner.get() : &s};
        break;
      case masking::StatementKind::Deallocate:
        forgetPrepared(s.name);
        break;
      case masking::StatementKind::DeclareCursor:
        cursors_[s.name] = {a, s.inner ? s.inner.get() : &s};
        break;
      case masking::StatementKind::ClosePortal:
        if (s.name.empty()) {
          cursors_.clear();
          portals_.clear();
          confirmedPortals_.clear();
        } else {
          cursors_.erase(s.name);
          portals_.erase(s.name);
          confirmedPortals_.erase(s.name);
        }
        break;
      case masking::StatementKind::Other:
        if (s.nodeType == "DiscardStmt") {
          // DISCARD ALL/PLANS/...: prepared statements and portals may be gone; forget them all
          // (later rows are then masked as unattributed, never raw).
          sqlPrepared_.clear();
          cursors_.clear();
          statements_.clear();
          confirmedStatements_.clear();
          portals_.clear();
          confirmedPortals_.clear();
          setSearchPath({});  // DISCARD ALL resets it to the server's default
        }
        break;
      case masking::StatementKind::Set:
      case masking::StatementKind::Reset:
        if (s.parameter == "search_path" || s.parameter == "all") {
          // A constant SET search_path is tracked; anything else makes it unknown again.
          std::vector<std::string> path;
          if (s.kind == masking::StatementKind::Set && !s.parameterValue.empty() && s.parameterValue != "?") {
            std::string v = s.parameterValue;
            std::size_t start = 0;
            while (start <= v.size()) {
              auto end = v.find(',', start);
              if (end == std::string::npos) end = v.size();
              auto item = v.substr(start, end - start);
              while (!item.empty() && item.front() == ' ') item.erase(item.begin());
              while (!item.empty() && item.back() == ' ') item.pop_back();
              if (item == "$user") item = identity_.user;
              if (!item.empty()) path.push_back(item);
              start = end + 1;
            }
          }
          setSearchPath(std::move(path));
        }
        break;
      default:
        break;
    }
  }
}

void MaskedFlow::setSearchPath(std::vector<std::string> path) {
  searchPath_ = std::move(path);
  searchPathKey_.clear();
  for (const auto& p : searchPath_) searchPathKey_ += p + "\n";
  contextKey_ = masking::AnalysisCache::contextKey(catalog_->generation(), searchPathKey_);
}

// SQL and protocol-level prepared statements share one namespace on the server. Empty: all.
void MaskedFlow::forgetPrepared(const std::string& name) {
  if (name.empty()) {
    sqlPrepared_.clear();
    statements_.clear();
    confirmedStatements_.clear();
  } else {
    sqlPrepared_.erase(name);
    statements_.erase(name);
    confirmedStatements_.erase(name);
  }
}

void MaskedFlow::forgetEffects(const masking::StatementAnalysis& s, std::string_view tag) {
  switch (s.kind) {
    case masking::StatementKind::Prepare:
    case masking::StatementKind::Deallocate:
      forgetPrepared(s.name);
      break;
    case masking::StatementKind::DeclareCursor:
    case masking::StatementKind::ClosePortal:
      if (s.name.empty()) {
        cursors_.clear();
        confirmedPortals_.clear();
      } else {
        cursors_.erase(s.name);
        confirmedPortals_.erase(s.name);
      }
      break;
    case masking::StatementKind::Set:
    case masking::StatementKind::Reset:
      if (s.parameter == "search_path" || s.parameter == "all") setSearchPath({});
      break;
    case masking::StatementKind::Other:
      if (s.nodeType == "DiscardStmt") forgetTracking();
      else afterStatement(nullptr, nullptr, tag);
      break;
    default:
      if (changesPortals(&s)) {  // transaction control, CALL, DO
        confirmedPortals_.clear();
        cursors_.clear();
        setSearchPath({});
      }
      break;
  }
}

void MaskedFlow::forgetTracking() {
  sqlPrepared_.clear();
  cursors_.clear();
  statements_.clear();
  confirmedStatements_.clear();
  confirmedPortals_.clear();
  setSearchPath({});
}

// EXECUTE and FETCH return the rows of another statement.
const masking::StatementAnalysis* MaskedFlow::effective(const masking::StatementAnalysis* s) const {
  if (!s) return nullptr;
  if (s->kind == masking::StatementKind::Execute) {
    auto it = sqlPrepared_.find(s->name);
    return it == sqlPrepared_.end() ? nullptr : it->second.statement;
  }
  if (s->kind == masking::StatementKind::Fetch) {
    auto it = cursors_.find(s->name);
    if (it != cursors_.end()) return it->second.statement;
    // A protocol-level portal as the server has it now, not as the client last bound it.
    auto* p = confirmedPortals_.find(s->name);
    if (!p || !(*p)->statement) return nullptr;
    const auto* inner = (*p)->statement;
    // A portal that itself runs EXECUTE or FETCH: not followed further.
    if (inner->kind == masking::StatementKind::Execute || inner->kind == masking::StatementKind::Fetch) return nullptr;
    return inner;
  }
  return s;
}

void MaskedFlow::alert(const std::string& rule, const std::string& action, const masking::Analysis* a,
                       std::uint64_t rows, std::uint64_t bytes) {
  if (!shared_.alerts) return;
  AlertEvent e;
  e.severity = rule == "canary" ? "critical" : "warning";
  if (rows && resultStart_ != std::chrono::steady_clock::time_point{}) {
    e.durationMs =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - resultStart_).count();
  }
  e.rule = rule;
  e.action = action;
  e.policyRole = policy_->role();
  e.user = identity_.user;
  e.database = identity_.database;
  e.applicationName = identity_.applicationName;
  e.client = identity_.clientAddr;
  e.sessionId = identity_.sessionId;
  if (a && a->parsed) {
    e.query = a->normalized();
    e.fingerprint = a->fingerprint();
  }
  e.rows = rows;
  e.bytes = bytes;
  shared_.alerts->emit(e);
}

bool MaskedFlow::readsClassified(const masking::StatementAnalysis* s) const {
  if (!s) return false;
  for (const auto& r : s->reads) {
    if (classification_->relationClassified(r.relOid)) return true;
  }
  return s->inner && readsClassified(s->inner.get());
}

void MaskedFlow::recordEnumeration(const masking::Analysis& a, std::string_view text,
                                   std::vector<masking::ExfiltrationFinding>& findings) {
  const auto& cfg = rules_->config->exfiltration;
  if (!a.parsed) return;
  auto n = shared_.enumeration.record(policy_->role() + "\n" + a.fingerprint(), masking::hash64(text),
                                      cfg.enumerationWindow, cfg.enumerationMaxQueries, std::chrono::steady_clock::now());
  if (n > cfg.enumerationMaxQueries) {
    findings.push_back({"enumeration", cfg.enumeration,
                        "the same query shape ran with more than " + std::to_string(cfg.enumerationMaxQueries) +
                            " different constants within " +
                            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(cfg.enumerationWindow).count()) +
                            " s"});
  }
}

bool MaskedFlow::exfiltrationBlocks(const masking::Analysis& a, std::string_view text, masking::Verdict& verdict) {
  const auto& cfg = rules_->config->exfiltration;
  if (exempt_ || !cfg.any()) return false;
  auto findings = masking::checkExfiltration(a, cfg, *classification_, *catalog_);
  bool classified = false;
  for (const auto& st : a.statements) classified = classified || readsClassified(&st);
  if (classified && cfg.enumeration != config::RuleAction::Off) recordEnumeration(a, text, findings);
  if (classified && distinctOn_) {
    auto est = shared_.distinctRows.estimate(windowKey_, cfg.distinctRowsWindow, std::chrono::steady_clock::now());
    if (est > static_cast<double>(cfg.distinctRowsMax)) {
      findings.push_back({"distinct_rows", cfg.distinctRows,
                          "this role received about " + std::to_string(static_cast<std::uint64_t>(est)) +
                              " distinct rows of classified relations within the window (limit " +
                              std::to_string(cfg.distinctRowsMax) + ")"});
    }
  }
  bool monitor = cfg.monitorOnly || monitorMode();
  for (const auto& f : findings) {
    if (f.action == config::RuleAction::Block && !monitor) {
      verdict = {false, "exfiltration." + f.rule, "pgveil: blocked by exfiltration rule " + f.rule + ": " + f.detail};
      counters().queriesBlocked.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (f.action == config::RuleAction::Block) counters().queriesMonitored.fetch_add(1, std::memory_order_relaxed);
    alert("exfiltration." + f.rule, f.action == config::RuleAction::Alert ? "alerted" : "monitored", &a);
  }
  return false;
}

void MaskedFlow::countVerdict(const masking::Verdict& v) {
  if (v.allowed) counters().queriesAllowed.fetch_add(1, std::memory_order_relaxed);
  else if (v.rule.rfind("exfiltration.", 0) != 0) counters().queriesRefused.fetch_add(1, std::memory_order_relaxed);
}

void MaskedFlow::flushWindow() {
  auto now = std::chrono::steady_clock::now();
  if (limits_->rowsPerWindow || limits_->bytesPerWindow) {
    roleWindow_ = shared_.windows.add(windowKey_, limits_->window, pendingRows_, pendingBytes_, now);
  }
  if (limits_->rowsPerWindowPerClient || limits_->bytesPerWindowPerClient) {
    clientWindow_ = shared_.windows.add(clientWindowKey_, limits_->window, pendingRows_, pendingBytes_, now);
  }
  pendingRows_ = 0;
  pendingBytes_ = 0;
}

// Within 64 rows or 64 KB of a window limit every row is checked against the shared totals.
bool MaskedFlow::nearWindowLimit() const {
  const auto& l = *limits_;
  auto near = [](std::uint64_t max, std::uint64_t used, std::uint64_t margin) { return max && used + margin >= max; };
  return near(l.rowsPerWindow, roleWindow_.rows + pendingRows_, 64) ||
         near(l.bytesPerWindow, roleWindow_.bytes + pendingBytes_, 64 << 10) ||
         near(l.rowsPerWindowPerClient, clientWindow_.rows + pendingRows_, 64) ||
         near(l.bytesPerWindowPerClient, clientWindow_.bytes + pendingBytes_, 64 << 10);
}

void MaskedFlow::flushDistinct() {
  if (!distinct_ || !distinctPending_) return;
  const auto& cfg = rules_->config->exfiltration;
  auto est = shared_.distinctRows.add(windowKey_, cfg.distinctRowsWindow, *distinct_, std::chrono::steady_clock::now());
  distinct_->clear();
  distinctPending_ = 0;
  bool over = est > static_cast<double>(cfg.distinctRowsMax);
  if (over && !distinctAlerted_) {
    // Crossing the threshold is an alert in every action but monitor; with block, the next
    // reads of classified relations are blocked (exfiltrationBlocks).
    alert("exfiltration.distinct_rows", cfg.distinctRows == config::RuleAction::Monitor ? "monitored" : "alerted",
          resultAnalysis_.get(), static_cast<std::uint64_t>(est), 0);
  }
  distinctAlerted_ = over;
}

// Accounts one row of the current result: canaries, limits, distinct rows.
MaskedFlow::Admit MaskedFlow::admitRow(std::string_view payload, std::size_t bytes, OutBatch& out) {
  auto& c = *current_;
  if (canaries_ && canaries_->find(payload) >= 0) {
    bool monitor = monitorMode();
    alert("canary", monitor ? "monitored" : "terminated", resultAnalysis_.get(), c.rows + 1, c.bytes + bytes);
    if (!monitor) {
      auto lockout = rules_->config->canaries.lockout;
      if (lockout.count() > 0) {
        std::lock_guard lock(shared_.lockoutMutex);
        shared_.lockouts[policy_->role()] = std::chrono::steady_clock::now() + lockout;
      }
      spdlog::error("session {} ended: a canary value appeared in a result for user \"{}\" (role policy {})",
                    identity_.sessionId, logSafe(identity_.user), policy_->role());
      fatalCode_ = protocol::sqlstate::kAdminShutdown;
      fatalMessage_ = "terminating connection due to administrator command: pgveil detected a planted canary value in "
                      "this session's results";
      return Admit::Fatal;
    }
  }
  if (c.truncated) return Admit::Drop;
  ++c.rows;
  c.bytes += bytes;
  if (distinctOn_ && currentClassified_) {
    if (!distinct_) distinct_ = std::make_unique<masking::DistinctSketch>();
    distinct_->add(masking::hash64(payload));
    if (++distinctPending_ >= 4096) flushDistinct();
  }
  const auto& l = *limits_;
  if (!l.any()) {
    ++c.forwarded;
    return Admit::Forward;
  }
  ++sessionRows_;
  sessionBytes_ += bytes;
  ++pendingRows_;
  pendingBytes_ += bytes;
  if (l.windowed() && (pendingRows_ >= 64 || nearWindowLimit())) flushWindow();
  const char* breached = nullptr;
  std::uint64_t limit = 0;
  auto over = [&](const char* name, std::uint64_t max, std::uint64_t value) {
    if (!breached && max && value > max) {
      breached = name;
      limit = max;
    }
  };
  over("rows_per_query", l.rowsPerQuery, c.rows);
  over("bytes_per_query", l.bytesPerQuery, c.bytes);
  over("rows_per_session", l.rowsPerSession, sessionRows_);
  over("bytes_per_session", l.bytesPerSession, sessionBytes_);
  over("rows_per_window", l.rowsPerWindow, roleWindow_.rows + pendingRows_);
  over("bytes_per_window", l.bytesPerWindow, roleWindow_.bytes + pendingBytes_);
  over("rows_per_window_per_client", l.rowsPerWindowPerClient, clientWindow_.rows + pendingRows_);
  over("bytes_per_window_per_client", l.bytesPerWindowPerClient, clientWindow_.bytes + pendingBytes_);
  if (!breached) {
    ++c.forwarded;
    return Admit::Forward;
  }
  std::string rule = std::string("limit.") + breached;
  if (monitorMode()) {
    if (!c.alerted) {
      c.alerted = true;
      alert(rule, "monitored", resultAnalysis_.get(), c.rows, c.bytes);
    }
    ++c.forwarded;
    return Admit::Forward;
  }
  counters().breaches.fetch_add(1, std::memory_order_relaxed);
  auto what = std::string(breached) + " (" + std::to_string(limit) + ")";
  // A cut COPY stream looks complete to its reader: COPY always gets the error.
  if (l.truncate && !copying_) {
    c.truncated = true;
    c.limit = what;
    alert(rule, "truncated", resultAnalysis_.get(), c.rows, c.bytes);
    return Admit::Drop;
  }
  alert(rule, "blocked", resultAnalysis_.get(), c.rows, c.bytes);
  spdlog::warn("session {} breached limit {} (role policy {}): result cut off after {} rows, query cancelled",
               identity_.sessionId, what, policy_->role(), c.forwarded);
  auto mark = out.owned().size();
  protocol::appendErrorResponse(out.owned(),
                                {.severity = "ERROR", .sqlstate = protocol::sqlstate::kProgramLimitExceeded,
                                 .message = "pgveil: limit " + what + " exceeded for role " + policy_->role() +
                                            "; the rest of the result was discarded and the query cancelled",
                                 .hint = "Ask for fewer rows (WHERE, LIMIT) or have the role's limits raised."});
  out.commitOwned(mark);
  discardUntilReady_ = true;
  // The cancel could hit work the client queued behind this statement (a pipelined Query, or
  // messages after the next Sync): then the rest of the result is drained instead.
  cancelWanted_ = !workQueuedBehind();
  copying_ = false;
  return Admit::Drop;
}

bool MaskedFlow::workQueuedBehind() const {
  bool syncSeen = false;
  for (std::size_t i = 1; i < expects_.size(); ++i) {
    const auto kind = expects_[i].kind;
    if (syncSeen || expects_.front().kind == Expect::SimpleQuery) return true;
    if (kind == Expect::Sync) syncSeen = true;
  }
  return false;
}

void MaskedFlow::endOfResult() {
  auto& c = *current_;
  auto threshold = limits_->largePullRows ? limits_->largePullRows : rules_->config->alerts.largePullRows;
  if (threshold && c.rows > threshold) alert("large_pull", "alerted", resultAnalysis_.get(), c.rows, c.bytes);
  if (pendingRows_) flushWindow();
  flushDistinct();
}

// Truncated results end with a warning and a CommandComplete that counts the rows sent.
void MaskedFlow::completeResult(const protocol::Message& m, OutBatch& out) {
  const auto& c = *current_;
  if (!c.truncated || m.type != msg::kCommandComplete) {
    out.ref(m.bytes);
    return;
  }
  std::string tag(m.payload.substr(0, m.payload.find('\0')));
  auto space = tag.rfind(' ');
  // SELECT and FETCH count the rows returned; INSERT/UPDATE/DELETE ... RETURNING count the rows
  // changed, which truncation does not change.
  bool counted = tag.rfind("SELECT ", 0) == 0 || tag.rfind("FETCH ", 0) == 0;
  if (counted && space != std::string::npos && tag.find_first_not_of("0123456789", space + 1) == std::string::npos) {
    tag = tag.substr(0, space + 1) + std::to_string(c.forwarded);
  }
  auto mark = out.owned().size();
  protocol::appendNoticeResponse(out.owned(),
                                 {.severity = "WARNING", .sqlstate = "01000",
                                  .message = "pgveil: result truncated after " + std::to_string(c.forwarded) +
                                             " rows by limit " + c.limit + " of role " + policy_->role()});
  protocol::MessageBuilder b(out.owned());
  b.begin(msg::kCommandComplete);
  b.cstring(tag);
  b.end();
  out.commitOwned(mark);
}

void MaskedFlow::refuse(OutBatch& out, char type, std::string_view statementName, const masking::Verdict& v,
                        const masking::Analysis& a) {
  ++refusals_;
  countVerdict(v);
  shared_.flowCounters.local().refusals.fetch_add(1, std::memory_order_relaxed);
  if (identity_.info) identity_.info->refusals.fetch_add(1, std::memory_order_relaxed);
  alert(v.rule.rfind("exfiltration.", 0) == 0 ? v.rule : "refused." + v.rule, "blocked", &a);
  // Logged with the normalized text only: constants never reach the log.
  spdlog::warn("session {} refused a statement: rule={} user=\"{}\" role_policy={} query=\"{}\"", identity_.sessionId,
               v.rule, logSafe(identity_.user), policy_->role(),
               logSafe(a.parsed ? a.normalized() : std::string("<unparsable>"), 300));
  auto mark = out.owned().size();
  protocol::MessageBuilder b(out.owned());
  if (type == msg::kBind) {
    // Two parameter format codes for no parameter: the server rejects the Bind before it looks
    // the statement up (08P01, an ERROR), whatever statements the client prepared.
    b.begin(msg::kBind);
    b.cstring(statementName);  // the portal
    b.cstring("pgveil: statement refused");
    b.i16(2);
    b.i16(0);
    b.i16(0);
    b.i16(0);
    b.i16(0);
    b.end();
  } else if (type == msg::kParse) {
    b.begin(msg::kParse);
    b.cstring(statementName);
    b.cstring(kRefusedSql);
    b.i16(0);
    b.end();
  } else {
    b.begin(msg::kQuery);
    b.cstring(kRefusedSql);
    b.end();
  }
  out.commitOwned(mark);
}

bool MaskedFlow::malformed(const char* what) {
  fatalCode_ = protocol::sqlstate::kProtocolViolation;
  fatalMessage_ = std::string("invalid ") + what + " message";
  return false;
}

bool MaskedFlow::onClientMessage(const protocol::Message& m, OutBatch& out) {
  switch (m.type) {
    case msg::kQuery: {
      protocol::QueryMsg q;
      if (!protocol::decodeQuery(m.payload, q)) {
        return malformed("Query");
      }
      ++clientEpoch_;
      if (!refreshSnapshot()) return false;
      auto a = analyze(q.sql);
      auto v = masking::gate(*a, *policy_, *classification_, *catalog_);
      if (v.allowed) exfiltrationBlocks(*a, q.sql, v);
      if (v.allowed) countVerdict(v);
      Expected e{Expect::SimpleQuery, a, {}, false, {}, {}, {}};
      if (!v.allowed) {
        e.refusal = v.message + "\n" + v.rule;
        refuse(out, msg::kQuery, {}, v, *a);
      } else {
        out.ref(m.bytes);
      }
      expects_.push_back(std::move(e));
      return true;
    }
    case msg::kFunctionCall: {
      // The fast-path function call runs any function by OID, unanalysed: refused.
      auto a = std::make_shared<masking::Analysis>();
      masking::Verdict v{false, "function_call", "pgveil: permission denied by rule function_call: the fast-path "
                                                 "FunctionCall message (large objects, lo_* functions) is not allowed"};
      if (!masked_ || policy_->allows("function_call")) {
        ++clientEpoch_;  // any function: it may close or open portals
        out.ref(m.bytes);
        expects_.push_back({Expect::SimpleQuery, a, {}, false, {}, {}, {}});
        return true;
      }
      Expected e{Expect::SimpleQuery, a, {}, false, v.message + "\n" + v.rule, {}, {}};
      refuse(out, msg::kQuery, {}, v, *a);
      expects_.push_back(std::move(e));
      return true;
    }
    case msg::kParse: {
      protocol::ParseMsg p;
      if (!protocol::decodeParse(m.payload, p)) {
        return malformed("Parse");
      }
      if (!refreshSnapshot()) return false;
      auto a = analyze(p.sql);
      auto v = masking::gate(*a, *policy_, *classification_, *catalog_);
      if (v.allowed) exfiltrationBlocks(*a, p.sql, v);
      if (v.allowed) countVerdict(v);
      Expected e{Expect::Parse, a, {}, false, {}, {}, std::string(p.statement)};
      if (!v.allowed) {
        e.refusal = v.message + "\n" + v.rule;
        refuse(out, msg::kParse, p.statement, v, *a);
        statements_.erase(std::string(p.statement));
      } else {
        statements_[std::string(p.statement)] = {a, a->statements.empty() ? nullptr : &a->statements[0]};
        out.ref(m.bytes);
      }
      expects_.push_back(std::move(e));
      return true;
    }
    case msg::kBind: {
      auto& b = bindScratch_;
      if (!protocol::decodeBind(m.payload, b)) {
        return malformed("Bind");
      }
      // Only a reload matters here (clients that never Parse again); the catalog snapshot is
      // picked up at the next Query or Parse.
      if (shared_.rulesGeneration.load(std::memory_order_acquire) != rules_->generation && !refreshSnapshot()) {
        return false;
      }
      auto portal = newPortal();
      portal->epoch = clientEpoch_;
      portal->boundStatement.assign(b.statement);
      auto it = statements_.find(portal->boundStatement);
      if (it != statements_.end()) {
        portal->analysis = it->second.analysis;
        // EXECUTE and FETCH are resolved (effective()) when their answers come, against what
        // the server has prepared and declared by then.
        portal->statement = it->second.statement;
      }
      // Paging through a prepared statement: the same statement bound with ever new values.
      const auto& ex = rules_->config->exfiltration;
      if (portal->analysis && !exempt_ && ex.enumeration != config::RuleAction::Off &&
          readsClassified(effective(portal->statement))) {
        std::vector<masking::ExfiltrationFinding> findings;
        auto values = m.payload.substr(std::min(m.payload.size(), b.portal.size() + b.statement.size() + 2));
        recordEnumeration(*portal->analysis, values, findings);
        if (!findings.empty()) {
          const auto& f = findings.front();
          if (f.action == config::RuleAction::Block && !ex.monitorOnly && !monitorMode()) {
            masking::Verdict v{false, "exfiltration." + f.rule,
                               "pgveil: blocked by exfiltration rule " + f.rule + ": " + f.detail};
            counters().queriesBlocked.fetch_add(1, std::memory_order_relaxed);
            refuse(out, msg::kBind, b.portal, v, *portal->analysis);
            expects_.push_back({Expect::Bind, nullptr, {}, false, v.message + "\n" + v.rule, nullptr, std::string(b.portal)});
            portals_.erase(b.portal);
            return true;
          }
          if (f.action == config::RuleAction::Block) counters().queriesMonitored.fetch_add(1, std::memory_order_relaxed);
          alert("exfiltration." + f.rule, f.action == config::RuleAction::Alert ? "alerted" : "monitored",
                portal->analysis.get());
        }
      }
      expects_.push_back({Expect::Bind, nullptr, {}, false, {}, portal, std::string(b.portal)});
      portals_.slot(b.portal) = std::move(portal);
      out.ref(m.bytes);
      return true;
    }
    case msg::kDescribe: {
      protocol::DescribeMsg d;
      if (!protocol::decodeDescribe(m.payload, d)) {
        return malformed("Describe");
      }
      if (d.target == 'S') {
        expects_.push_back({Expect::DescribeStatement, nullptr, std::string(d.name), false, {}, {}, {}});
      } else {
        bool verify = false;
        auto& portal = portalForUse(d.name, verify);
        portal->described = true;
        Expected e{Expect::DescribePortal, nullptr, std::string(d.name), false, {}, portal, {}};
        e.verify = verify;
        expects_.push_back(std::move(e));
      }
      out.ref(m.bytes);
      return true;
    }
    case msg::kExecute: {
      protocol::ExecuteMsg e;
      if (!protocol::decodeExecute(m.payload, e)) {
        return malformed("Execute");
      }
      bool verify = false;
      auto& portal = portalForUse(e.portal, verify);
      // Bound before a possible change: described again, and checked when the answer comes.
      if (verify) portal->described = false;
      if (!portal->described) {
        // The client did not ask for the row description: pgveil asks for it itself, so that
        // the rows are attributed, and swallows the answer.
        auto mark = out.owned().size();
        protocol::MessageBuilder b(out.owned());
        b.begin(msg::kDescribe);
        b.u8('P');
        b.cstring(e.portal);
        b.end();
        out.commitOwned(mark);
        portal->described = true;
        Expected d{Expect::DescribePortal, nullptr, std::string(e.portal), true, {}, portal, {}};
        d.verify = verify;
        expects_.push_back(std::move(d));
      }
      expects_.push_back({Expect::Execute, nullptr, std::string(e.portal), false, {}, portal, {}});
      if (changesPortals(portal->statement)) ++clientEpoch_;
      out.ref(m.bytes);
      return true;
    }
    case msg::kClose: {
      protocol::CloseMsg c;
      if (!protocol::decodeClose(m.payload, c)) {
        return malformed("Close");
      }
      // Also the SQL-level statement or cursor of that name: one namespace on the server.
      if (c.target == 'S') {
        statements_.erase(std::string(c.name));
        confirmedStatements_.erase(std::string(c.name));
        if (!c.name.empty()) sqlPrepared_.erase(std::string(c.name));
      } else {
        portals_.erase(c.name);
        confirmedPortals_.erase(c.name);
        if (!c.name.empty()) cursors_.erase(std::string(c.name));
      }
      expects_.push_back({Expect::Close, nullptr, {}, false, {}, {}, std::string(c.name), c.target});
      out.ref(m.bytes);
      return true;
    }
    case msg::kSync:
      ++clientEpoch_;
      expects_.push_back({Expect::Sync, nullptr, {}, false, {}, {}, {}});
      out.ref(m.bytes);
      return true;
    case msg::kCopyDone:
    case msg::kCopyFail:
      if (copyIn_) {
        // PostgreSQL ignores Sync (and Flush) while in COPY FROM STDIN mode (protocol docs
        // 55.2.6): Syncs sent after the COPY's Execute and before this message get no answer.
        // Every Sync still queued was sent after the COPY began (earlier batches were answered
        // before the CopyInResponse), also when the COPY failed and its Execute is gone.
        copyIn_ = false;
        expects_.erase(std::remove_if(expects_.begin(), expects_.end(), [](const Expected& e) { return e.kind == Expect::Sync; }),
                       expects_.end());
      }
      out.ref(m.bytes);
      return true;
    default:
      out.ref(m.bytes);
      return true;
  }
}

void MaskedFlow::planFromRowDescription(std::string_view payload, const masking::StatementAnalysis* stmt,
                                        masking::ResultPlan& plan) {
  auto& rd = rowDescriptionScratch_;
  if (!protocol::decodeRowDescription(payload, rd)) {
    // Unreadable: mark the plan so that every row is refused (rewriteDataRow checks counts).
    plan = {};
    plan.any = true;
    return;
  }
  masking::planResult(rd, stmt, *policy_, *classification_, *catalog_, plan);
  for (const auto& f : rd.fields) {
    if (f.tableOid != 0 && !catalog_->byOid(f.tableOid)) {
      shared_.catalogs->requestRefresh(identity_.database);
      break;
    }
  }
}

void MaskedFlow::beginResult(ResultCount* count, std::shared_ptr<const masking::Analysis> analysis,
                             const masking::StatementAnalysis* stmt) {
  current_ = count;
  resultAnalysis_ = std::move(analysis);
  currentClassified_ = distinctOn_ && readsClassified(stmt);
  if (count->rows == 0) resultStart_ = std::chrono::steady_clock::now();
  // Other sessions' rows, and rows that left the window, since this session last looked.
  if (limits_->windowed()) flushWindow();
}

// Admits one row (admitRow) and counts it for the session, its role and the process. False:
// the caller returns `result` without forwarding the row.
bool MaskedFlow::admit(const protocol::Message& m, OutBatch& out, bool& result) {
  switch (admitRow(m.payload, m.bytes.size(), out)) {
    case Admit::Drop:
      result = true;
      return false;
    case Admit::Fatal:
      result = false;
      return false;
    case Admit::Forward:
      break;
  }
  if (pending_.rows >= 256) flushCounts();
  ++pending_.rows;
  pending_.bytes += m.bytes.size();
  return true;
}

bool MaskedFlow::forwardDataRow(const protocol::Message& m, const masking::ResultPlan& plan, OutBatch& out) {
  if (bool result = false; !admit(m, out, result)) return result;
  if (!plan.any) {
    out.ref(m.bytes);
    return true;
  }
  auto mark = out.owned().size();
  if (!masking::rewriteDataRow(plan, m.payload, *shared_.masker, out.owned(), scratch_)) {
    out.owned().resize(mark);
    fatalCode_ = protocol::sqlstate::kProtocolViolation;
    fatalMessage_ = "pgveil: a row did not match its description; the session is closed to protect masked data";
    return false;
  }
  out.commitOwned(mark);
  countMasked(m.bytes.size());
  return true;
}

void MaskedFlow::scrubError(const protocol::Message& m, OutBatch& out, const std::string* replacement) {
  protocol::ErrorMsg e;
  if (!protocol::decodeError(m.payload, e)) {
    auto mark = out.owned().size();
    protocol::appendErrorResponse(out.owned(), {.severity = "ERROR", .sqlstate = protocol::sqlstate::kInternalError,
                                                .message = "pgveil: unreadable error from the server"});
    out.commitOwned(mark);
    return;
  }
  auto code = e.field('C');
  if (replacement && code != "25P02") {
    auto nl = replacement->rfind('\n');
    out.own(encodeErrorMessage(replacement->substr(0, nl), replacement->substr(nl + 1)));
    return;
  }
  if (!masked_) {
    out.ref(m.bytes);  // an unmasked role sees the server's own errors and notices
    return;
  }
  // Only errors whose text names objects from the query (syntax, undefined objects, permissions,
  // connection and resource conditions) keep their message, scrubbed by detect; every other
  // error (data exceptions, integrity violations, RAISE in functions, internal errors) may quote
  // values and keeps only its SQLSTATE. Details, context and internal queries are dropped.
  static const char* kTextSafe[] = {"42601", "42703", "42883", "42804", "42P01", "42P02", "42702", "42725",
                                    "42P18", "42846", "42501", "42P05", "42P03", "34000", "26000", "25P02",
                                    "25001", "25P01", "57014", "0A000", "3D000", "3F000", "40001", "40P01",
                                    "55P03", "54000", "53300", "57P01", "57P03", "08P01"};
  bool textSafe = code.starts_with("08") || code.starts_with("53") || code.starts_with("28");
  for (const char* k : kTextSafe) textSafe = textSafe || code == k;
  // Notices name objects ("table t does not exist, skipping"), except RAISE NOTICE/WARNING from
  // functions and triggers (00000, 01000), which may print values: those lose their text.
  if (m.type == msg::kNoticeResponse) textSafe = code != "00000" && code != "01000";
  std::vector<protocol::ErrorField> fields;
  std::vector<std::string> storage;
  storage.reserve(e.fields.size() + 1);
  for (const auto& f : e.fields) {
    switch (f.code) {
      case 'M':
        if (!textSafe) {
          storage.push_back("pgveil: the details of this error are hidden for this role (SQLSTATE " + std::string(code) +
                            ")");
        } else {
          storage.emplace_back();
          shared_.masker->detect(f.value, storage.back());
        }
        fields.push_back({f.code, storage.back()});
        break;
      case 'H':
        if (!textSafe) break;
        storage.emplace_back();
        shared_.masker->detect(f.value, storage.back());
        fields.push_back({f.code, storage.back()});
        break;
      case 'D':
      case 'W':
      case 'q':
        break;
      default:
        fields.push_back(f);
    }
  }
  auto mark = out.owned().size();
  protocol::appendErrorFields(out.owned(), m.type, fields);
  out.commitOwned(mark);
}

void MaskedFlow::startCopy(std::string_view payload, const masking::StatementAnalysis* stmt) {
  protocol::CopyResponseMsg c;
  copying_ = true;
  copyPlan_ = {};
  if (!protocol::decodeCopyResponse(payload, c)) {
    copyPlan_.any = true;  // no fields: every row fails the layout check and ends the session
    return;
  }
  copyFormat_ = c.overallFormat == 1 ? CopyFormat::Binary : CopyFormat::Text;
  copyDelimiter_ = '\t';
  copyHeaderPending_ = copyFormat_ == CopyFormat::Binary;
  const masking::StatementAnalysis* s = stmt;
  if (s && s->kind == masking::StatementKind::CopyTo) {
    if (s->copyFormat == "csv") {
      copyFormat_ = CopyFormat::Csv;
      copyDelimiter_ = ',';
    }
    if (s->copyDelimiter) copyDelimiter_ = s->copyDelimiter;
    if (s->copyHeader && copyFormat_ != CopyFormat::Binary) {
      // The header line PostgreSQL writes for these columns (CSV quotes names when needed). A
      // first line that is anything else is treated as data.
      copyHeaderPending_ = true;
      copyHeaderLine_.clear();
      for (std::size_t i = 0; i < s->outputs.size(); ++i) {
        if (i) copyHeaderLine_.push_back(copyDelimiter_);
        const auto& n = s->outputs[i].name;
        bool quote = copyFormat_ == CopyFormat::Csv &&
                     (n.empty() || n.find_first_of(std::string("\"\r\n") + copyDelimiter_) != std::string::npos);
        if (quote) {
          copyHeaderLine_.push_back('"');
          for (char ch : n) {
            if (ch == '"') copyHeaderLine_.push_back('"');
            copyHeaderLine_.push_back(ch);
          }
          copyHeaderLine_.push_back('"');
        } else {
          copyHeaderLine_ += n;
        }
      }
      copyHeaderLine_.push_back('\n');
    }
  }
  if (!s && masked_) {
    // Unattributed COPY output: mask every column.
    copyPlan_.fields.resize(c.columnFormats.size());
    for (auto& f : copyPlan_.fields) {
      f.mask = true;
      f.typeOid = 25;
      f.format = static_cast<std::int16_t>(c.overallFormat);
    }
    copyPlan_.any = !copyPlan_.fields.empty();
    return;
  }
  if (!s) return;  // unmasked role: nothing to mask
  copyPlan_ = masking::planCopy(*s, c.columnFormats.size(), static_cast<std::int16_t>(c.overallFormat), *policy_,
                                *classification_, *catalog_);
  if (copyPlan_.any && s->copyNonDefaultQuoting) {
    // A layout pgveil does not parse: every column masked to NULL rather than risk a raw value.
    for (auto& f : copyPlan_.fields) {
      f.mask = true;
      f.strategy = masking::makeStrategy("null", {});
    }
  }
}

// One CopyData is one row (PostgreSQL docs 55.2.6: "always one per row"), plus the binary
// header before the first row.
bool MaskedFlow::forwardCopyData(const protocol::Message& m, OutBatch& out) {
  if (bool result = false; !admit(m, out, result)) return result;
  if (!copyPlan_.any) {
    out.ref(m.bytes);
    return true;
  }
  std::string_view row = m.payload;
  std::string& rebuilt = scratch2_;
  rebuilt.clear();
  auto fail = [&]() {
    fatalCode_ = protocol::sqlstate::kProtocolViolation;
    fatalMessage_ = "pgveil: COPY data in an unexpected layout; the session is closed to protect masked data";
    return false;
  };
  if (copyFormat_ == CopyFormat::Binary) {
    protocol::ByteReader r(row);
    if (copyHeaderPending_) {
      auto sig = r.bytes(11);
      (void)r.i32();
      auto extLen = r.i32();
      if (!r.ok() || sig != std::string_view("PGCOPY\n\377\r\n\0", 11) || extLen < 0) return fail();
      (void)r.bytes(static_cast<std::size_t>(extLen));
      if (!r.ok()) return fail();
      rebuilt.append(row.substr(0, r.position()));
      copyHeaderPending_ = false;
    }
    while (!r.atEnd()) {
      auto n = r.i16();
      if (!r.ok()) return fail();
      protocol::MessageBuilder b(rebuilt);
      b.i16(n);
      if (n == -1) continue;  // trailer
      if (static_cast<std::size_t>(n) != copyPlan_.fields.size()) return fail();
      for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
        auto len = r.i32();
        if (!r.ok() || len < -1) return fail();
        if (len == -1) {
          b.i32(-1);
          continue;
        }
        auto v = r.bytes(static_cast<std::size_t>(len));
        if (!r.ok()) return fail();
        const auto& f = copyPlan_.fields[i];
        if (!f.mask) {
          b.i32(len);
          b.bytes(v);
        } else if (shared_.masker->mask(f.strategy, f.typeOid, 1, v, scratch_)) {
          b.i32(static_cast<std::int32_t>(scratch_.size()));
          b.bytes(scratch_);
        } else {
          b.i32(-1);
        }
      }
    }
  } else if (copyHeaderPending_ && m.payload == copyHeaderLine_) {
    // Exactly the header PostgreSQL writes: the column names, nothing else.
    copyHeaderPending_ = false;
    out.ref(m.bytes);
    return true;
  } else {
    copyHeaderPending_ = false;
    bool csv = copyFormat_ == CopyFormat::Csv;
    if (row.empty() || row.back() != '\n') return fail();
    row.remove_suffix(1);
    std::size_t col = 0;
    std::size_t i = 0;
    std::string field;
    while (true) {
      // Read one field.
      field.clear();
      bool isNull = false;
      bool quoted = false;
      if (csv) {
        if (i < row.size() && row[i] == '"') {
          quoted = true;
          ++i;
          while (i < row.size()) {
            if (row[i] == '"') {
              if (i + 1 < row.size() && row[i + 1] == '"') {
                field.push_back('"');
                i += 2;
                continue;
              }
              ++i;
              break;
            }
            field.push_back(row[i++]);
          }
        }
        while (i < row.size() && row[i] != copyDelimiter_) field.push_back(row[i++]);
        isNull = !quoted && field.empty();
      } else {
        std::size_t start = i;
        while (i < row.size() && row[i] != copyDelimiter_) ++i;
        std::string_view raw = row.substr(start, i - start);
        if (raw == "\\N") {
          isNull = true;
        } else {
          for (std::size_t k = 0; k < raw.size(); ++k) {
            if (raw[k] != '\\' || k + 1 >= raw.size()) {
              field.push_back(raw[k]);
              continue;
            }
            char e = raw[++k];
            switch (e) {
              case 't': field.push_back('\t'); break;
              case 'n': field.push_back('\n'); break;
              case 'r': field.push_back('\r'); break;
              case 'b': field.push_back('\b'); break;
              case 'f': field.push_back('\f'); break;
              case 'v': field.push_back('\v'); break;
              default: field.push_back(e); break;
            }
          }
        }
      }
      if (col >= copyPlan_.fields.size()) return fail();
      const auto& f = copyPlan_.fields[col];
      if (col > 0) rebuilt.push_back(copyDelimiter_);
      bool outNull = isNull;
      std::string_view value = field;
      if (!isNull && f.mask) {
        if (shared_.masker->mask(f.strategy, f.typeOid, 0, field, scratch_)) value = scratch_;
        else outNull = true;
      }
      if (outNull) {
        if (!csv) rebuilt += "\\N";
      } else if (csv) {
        rebuilt.push_back('"');
        for (char ch : value) {
          if (ch == '"') rebuilt.push_back('"');
          rebuilt.push_back(ch);
        }
        rebuilt.push_back('"');
      } else {
        for (char ch : value) {
          switch (ch) {
            case '\\': rebuilt += "\\\\"; break;
            case '\t': rebuilt += "\\t"; break;
            case '\n': rebuilt += "\\n"; break;
            case '\r': rebuilt += "\\r"; break;
            default:
              if (ch == copyDelimiter_) rebuilt.push_back('\\');
              rebuilt.push_back(ch);
          }
        }
      }
      ++col;
      if (i >= row.size()) break;
      ++i;  // delimiter
    }
    if (col != copyPlan_.fields.size()) return fail();
    rebuilt.push_back('\n');
  }
  auto mark = out.owned().size();
  protocol::MessageBuilder b(out.owned());
  b.begin(msg::kCopyData);
  b.bytes(rebuilt);
  b.end();
  out.commitOwned(mark);
  countMasked(m.bytes.size());
  return true;
}

void MaskedFlow::countMasked(std::size_t bytes) {
  ++rowsMasked_;
  ++pending_.rowsMasked;
  pending_.bytesMasked += bytes;
}

void MaskedFlow::flushCounts() {
  if (pending_.rows == 0 && pending_.rowsMasked == 0) return;
  constexpr auto relaxed = std::memory_order_relaxed;
  auto& flow = shared_.flowCounters.local();
  flow.rowsForwarded.fetch_add(pending_.rows, relaxed);
  flow.rowsMasked.fetch_add(pending_.rowsMasked, relaxed);
  counters().rowsForwarded.fetch_add(pending_.rows, relaxed);
  counters().bytesForwarded.fetch_add(pending_.bytes, relaxed);
  counters().rowsMasked.fetch_add(pending_.rowsMasked, relaxed);
  counters().bytesMasked.fetch_add(pending_.bytesMasked, relaxed);
  if (identity_.info) {
    identity_.info->rows.fetch_add(pending_.rows, relaxed);
    identity_.info->rowsMasked.fetch_add(pending_.rowsMasked, relaxed);
  }
  pending_ = {};
}

void MaskedFlow::rollbackToConfirmed() {
  statements_ = confirmedStatements_;
  portals_ = confirmedPortals_;
  replayPending();
}

void MaskedFlow::releasePortals() {
  confirmedPortals_.clear();
  keepAsSpare(portals_.unnamed());
  portals_.clear();
  replayPending();
}

// Called once the answered requests are off the queue: what is left was sent after their Sync
// (nothing, unless the client pipelines), in order.
void MaskedFlow::replayPending() {
  for (const auto& e : expects_) {
    switch (e.kind) {
      case Expect::Parse:
        if (e.refusal.empty() && e.analysis) {
          statements_[e.name] = {e.analysis, e.analysis->statements.empty() ? nullptr : &e.analysis->statements[0]};
        } else {
          statements_.erase(e.name);
        }
        break;
      case Expect::Bind:
        if (e.portalState) {
          // Resolved again: a Parse it relied on may have failed or been skipped.
          auto& p = *e.portalState;
          auto it = statements_.find(p.boundStatement);
          p.analysis = it == statements_.end() ? nullptr : it->second.analysis;
          p.statement = it == statements_.end() ? nullptr : it->second.statement;
          portals_.slot(e.name) = e.portalState;
        } else {
          portals_.erase(e.name);
        }
        break;
      case Expect::Close:
        if (e.target == 'S') statements_.erase(e.name);
        else portals_.erase(e.name);
        break;
      default:
        break;
    }
  }
}

// Kept only when nothing else refers to it: no queued response (a client pipelining past
// this transaction) and no result in progress. The same object then comes back at the same
// address: `current_ != &portal->count` tells a new result only because current_ is reset
// whenever an Execute ends (CommandComplete, PortalSuspended, EmptyQuery, ErrorResponse).
void MaskedFlow::keepAsSpare(std::shared_ptr<Portal>& portal) {
  if (spareCount_ < spares_.size() && portal && portal.use_count() == 1 && current_ != &portal->count) {
    portal->reset();
    spares_[spareCount_++] = std::move(portal);
  }
}

std::shared_ptr<MaskedFlow::Portal> MaskedFlow::newPortal() {
  if (spareCount_ > 0) return std::move(spares_[--spareCount_]);
  return std::make_shared<Portal>();
}

std::shared_ptr<MaskedFlow::Portal>& MaskedFlow::portalForUse(std::string_view name, bool& verify) {
  auto& portal = portals_.slot(name);
  if (!portal) {
    // Unknown to pgveil (never bound, or closed): no statement, described before use.
    portal = newPortal();
  } else if (portal->epoch != clientEpoch_) {
    verify = true;
  }
  portal->epoch = clientEpoch_;
  return portal;
}

bool MaskedFlow::changesPortals(const masking::StatementAnalysis* s) {
  if (!s) return true;
  switch (s->kind) {
    case masking::StatementKind::Empty:
    case masking::StatementKind::Select:
    case masking::StatementKind::Insert:
    case masking::StatementKind::Update:
    case masking::StatementKind::Delete:
    case masking::StatementKind::Merge:
    case masking::StatementKind::CopyTo:
    case masking::StatementKind::CopyFrom:
    case masking::StatementKind::Set:
    case masking::StatementKind::Reset:
    case masking::StatementKind::Show:
    case masking::StatementKind::Fetch:
    case masking::StatementKind::Listen:
    case masking::StatementKind::Notify:
    case masking::StatementKind::Unlisten:
    case masking::StatementKind::Ddl:
    case masking::StatementKind::Prepare:
    case masking::StatementKind::Deallocate:
    case masking::StatementKind::Execute:  // of a prepared SELECT or DML
    case masking::StatementKind::Explain:
      return false;
    default:
      return true;  // transaction control, DECLARE, CLOSE, CALL, DO, DISCARD, unknown
  }
}

void MaskedFlow::afterStatement(const std::shared_ptr<const masking::Analysis>& a,
                                const masking::StatementAnalysis* s, std::string_view tag) {
  if (!a || !s) {
    forgetTracking();
    return;
  }
  trackStatement(a, *s);
  tag = tag.substr(0, tag.find('\0'));
  switch (s->kind) {
    case masking::StatementKind::DeclareCursor:
      confirmedPortals_.erase(s->name);  // whatever portal had that name is gone
      break;
    case masking::StatementKind::ClosePortal:
      break;  // trackStatement forgot it
    case masking::StatementKind::Transaction:
      // COMMIT (also END, and COMMIT of a failed transaction: tag ROLLBACK), ROLLBACK (also
      // ROLLBACK TO SAVEPOINT, which drops only the portals opened since: forgetting all of them
      // only makes later uses unattributed), PREPARE TRANSACTION. BEGIN, SAVEPOINT and RELEASE
      // close nothing.
      if (tag == "COMMIT" || tag == "ROLLBACK" || tag == "PREPARE TRANSACTION") {
        confirmedPortals_.clear();
        cursors_.clear();
      }
      // A rollback also undoes a SET search_path made since: the path is unknown again.
      if (tag == "ROLLBACK") setSearchPath({});
      break;
    default:
      if (changesPortals(s)) {
        // CALL and DO (a procedure may commit), DISCARD, statements pgveil does not model.
        confirmedPortals_.clear();
        cursors_.clear();
      }
      break;
  }
}

// The response at hand must answer the oldest request; anything else means pgveil lost track
// of the stream, and the session ends rather than attribute rows to the wrong statement.
bool MaskedFlow::expectFront(Expect kind) {
  if (!expects_.empty() && expects_.front().kind == kind) return true;
  fatalCode_ = protocol::sqlstate::kProtocolViolation;
  fatalMessage_ = "pgveil: a response does not match the request it answers; the session is closed to protect masked data";
  return false;
}

// COPY responses, the same in a simple query and in an Execute.
bool MaskedFlow::onCopyMessage(const protocol::Message& m, const masking::StatementAnalysis* stmt, OutBatch& out) {
  switch (m.type) {
    case msg::kCopyOutResponse:
      startCopy(m.payload, stmt);
      out.ref(m.bytes);
      return true;
    case msg::kCopyData:
      if (copying_) return forwardCopyData(m, out);
      fatalCode_ = protocol::sqlstate::kProtocolViolation;
      fatalMessage_ = "pgveil: COPY data outside of a COPY";
      return false;
    case msg::kCopyDone:
      copying_ = false;
      out.ref(m.bytes);
      return true;
    case msg::kCopyInResponse:
      copyIn_ = true;
      out.ref(m.bytes);
      return true;
    default:  // CopyBothResponse: replication
      fatalCode_ = protocol::sqlstate::kInsufficientPrivilege;
      fatalMessage_ = "pgveil: replication (COPY BOTH) is not allowed for masked roles";
      return false;
  }
}

void MaskedFlow::popUntilSync() {
  while (!expects_.empty() && expects_.front().kind != Expect::Sync) expects_.pop_front();
}

bool MaskedFlow::onServerMessage(const protocol::Message& m, OutBatch& out) {
  // A result ends (or never had rows); rows (DataRow, COPY's CopyData) are flushed every 256.
  if (m.type != msg::kDataRow && m.type != msg::kCopyData) flushCounts();
  if (!discardUntilReady_) return handleServerMessage(m, out);
  // After an error-mode breach the client already has its error: everything up to the next
  // ReadyForQuery is tracked (statements, portals, the response queue) but not forwarded, except
  // what concerns the session rather than the query.
  switch (m.type) {
    case msg::kReadyForQuery:
      // The statement is over: a cancel not sent yet is no longer needed.
      discardUntilReady_ = false;
      cancelWanted_ = false;
      return handleServerMessage(m, out);
    case msg::kErrorResponse: {
      // A FATAL from the server still reaches the client.
      protocol::ErrorMsg e;
      if (protocol::decodeError(m.payload, e) && (e.field('S') == "FATAL" || e.field('S') == "PANIC")) {
        return handleServerMessage(m, out);
      }
      OutBatch sink;
      return handleServerMessage(m, sink);
    }
    case msg::kDataRow:
    case msg::kCopyData:
      return true;
    case msg::kParameterStatus:
    case msg::kNotification:
      return handleServerMessage(m, out);
    default: {
      OutBatch sink;
      return handleServerMessage(m, sink);
    }
  }
}

bool MaskedFlow::handleServerMessage(const protocol::Message& m, OutBatch& out) {
  Expected* front = expects_.empty() ? nullptr : &expects_.front();
  if (!masked_ && (m.type == msg::kNotification || m.type == msg::kParameterStatus)) {
    out.ref(m.bytes);
    return true;
  }
  switch (m.type) {
    case msg::kNoticeResponse:
      scrubError(m, out, nullptr);
      return true;
    case msg::kNotification: {
      protocol::NotificationMsg n;
      if (!protocol::decodeNotification(m.payload, n)) return true;
      // Payloads come from other sessions, possibly unmasked ones: redacted unless allowed.
      std::string payload;
      if (policy_->allows("notify")) shared_.masker->detect(n.payload, payload);
      else payload = n.payload.empty() ? "" : "***";
      auto mark = out.owned().size();
      protocol::MessageBuilder b(out.owned());
      b.begin(msg::kNotification);
      b.i32(n.pid);
      b.cstring(n.channel);
      b.cstring(payload);
      b.end();
      out.commitOwned(mark);
      return true;
    }
    case msg::kParameterStatus: {
      protocol::ParameterStatusMsg p;
      if (!protocol::decodeParameterStatus(m.payload, p)) return true;
      std::string lower(p.value);
      for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (p.name == "client_encoding" && lower != "utf8" && lower != "unicode") {
        fatalCode_ = protocol::sqlstate::kInsufficientPrivilege;
        fatalMessage_ = "pgveil: client_encoding left UTF8; the session is ended because queries would no longer parse "
                        "as analyzed";
        return false;
      }
      if (p.name == "standard_conforming_strings" && p.value != "on") {
        fatalCode_ = protocol::sqlstate::kInsufficientPrivilege;
        fatalMessage_ = "pgveil: standard_conforming_strings was turned off; the session is ended because queries "
                        "would no longer parse as analyzed";
        return false;
      }
      // Values a client can set from data (application_name = set_config(..., email)): scrubbed.
      std::string value;
      shared_.masker->detect(p.value, value);
      auto mark = out.owned().size();
      protocol::MessageBuilder b(out.owned());
      b.begin(msg::kParameterStatus);
      b.cstring(p.name);
      b.cstring(value);
      b.end();
      out.commitOwned(mark);
      return true;
    }
    default:
      break;
  }
  if (!front) {
    // A response nobody asked for: refuse to forward what cannot be attributed.
    if (m.type == msg::kErrorResponse) {
      scrubError(m, out, nullptr);
      return true;
    }
    fatalCode_ = protocol::sqlstate::kProtocolViolation;
    fatalMessage_ = "pgveil: unexpected message from the server; the session is closed to protect masked data";
    return false;
  }

  if (front->kind == Expect::SimpleQuery) {
    const auto& stmts = front->analysis->statements;
    const masking::StatementAnalysis* stmt = simpleIndex_ < stmts.size() ? &stmts[simpleIndex_] : nullptr;
    switch (m.type) {
      case msg::kRowDescription:
        planFromRowDescription(m.payload, effective(stmt), simplePlan_);
        simplePlanned_ = true;
        beginResult(&simpleCount_, front->analysis, effective(stmt));
        out.ref(m.bytes);
        return true;
      case msg::kDataRow:
        if (!simplePlanned_) {
          fatalCode_ = protocol::sqlstate::kProtocolViolation;
          fatalMessage_ = "pgveil: rows without a row description";
          return false;
        }
        return forwardDataRow(m, simplePlan_, out);
      case msg::kCopyOutResponse:
      case msg::kCopyData:
      case msg::kCopyDone:
      case msg::kCopyBothResponse:
      case msg::kCopyInResponse:
        if (m.type == msg::kCopyOutResponse) beginResult(&simpleCount_, front->analysis, effective(stmt));
        return onCopyMessage(m, stmt, out);
      case msg::kCommandComplete:
      case msg::kEmptyQuery:
        current_ = &simpleCount_;
        endOfResult();
        completeResult(m, out);
        if (m.type == msg::kCommandComplete && front->refusal.empty()) afterStatement(front->analysis, stmt, m.payload);
        ++simpleIndex_;
        simplePlanned_ = false;
        simplePlan_.clear();
        simpleCount_ = {};
        copying_ = false;
        return true;
      case msg::kErrorResponse:
        current_ = &simpleCount_;
        endOfResult();
        simpleCount_ = {};
        if (!front->refusal.empty() && !refusalSent_) {
          refusalSent_ = true;
          scrubError(m, out, &front->refusal);
        } else {
          scrubError(m, out, nullptr);
        }
        copying_ = false;
        return true;
      case msg::kReadyForQuery:
        expects_.pop_front();
        txStatus_ = m.payload.empty() ? 'I' : m.payload[0];
        if (m.payload == "I") {
          // Transaction over: its portals and cursors are gone (held cursors are forgotten too:
          // their later rows are masked as unattributed).
          releasePortals();
          cursors_.clear();
        }
        simpleIndex_ = 0;
        simplePlanned_ = false;
        simplePlan_.clear();
        refusalSent_ = false;
        copying_ = false;
        out.ref(m.bytes);
        return true;
      default:
        out.ref(m.bytes);  // CopyInResponse, FunctionCallResponse and the like
        return true;
    }
  }

  switch (m.type) {
    case msg::kParseComplete: {
      if (!expectFront(Expect::Parse)) return false;
      auto& e = expects_.front();
      // What the statement does (PREPARE, DECLARE, CLOSE, SET, ...) is tracked when an Execute
      // of it completes: a statement parsed is not a statement run.
      if (e.analysis) {
        confirmedStatements_[e.name] = {e.analysis, e.analysis->statements.empty() ? nullptr : &e.analysis->statements[0]};
      }
      if (!e.name.empty()) sqlPrepared_.erase(e.name);
      expects_.pop_front();
      out.ref(m.bytes);
      return true;
    }
    case msg::kBindComplete:
      if (!expectFront(Expect::Bind)) return false;
      if (expects_.front().portalState) {
        auto& confirmed = confirmedPortals_.slot(expects_.front().name);
        // Inside a transaction the unnamed portal bound before is gone now, also for a rollback.
        if (expects_.front().name.empty() && confirmed != expects_.front().portalState) keepAsSpare(confirmed);
        confirmed = expects_.front().portalState;
        if (!expects_.front().name.empty()) cursors_.erase(expects_.front().name);
      }
      expects_.pop_front();
      out.ref(m.bytes);
      return true;
    case msg::kCloseComplete:
      if (!expectFront(Expect::Close)) return false;
      expects_.pop_front();
      out.ref(m.bytes);
      return true;
    case msg::kParameterDescription:
      out.ref(m.bytes);
      return true;
    case msg::kRowDescription:
    case msg::kNoData: {
      if (front->kind != Expect::DescribePortal && front->kind != Expect::DescribeStatement) {
        return expectFront(Expect::DescribePortal);
      }
      bool injected = front->injected;
      if (front->kind == Expect::DescribePortal && front->portalState) {
        auto& portal = *front->portalState;
        if (front->verify) {
          // The server's portal of that name must be the one pgveil bound; otherwise its
          // statement is unknown here and its columns are attributed from this description
          // alone (unattributed ones masked).
          const auto* confirmed = confirmedPortals_.find(front->portal);
          if (!confirmed || *confirmed != front->portalState) {
            if (portal.analysis) portal.unverified = std::move(portal.analysis);
            portal.analysis.reset();
            portal.statement = nullptr;  // the row counts stay: per-query limits are not reset
          }
        }
        if (m.type == msg::kRowDescription) planFromRowDescription(m.payload, effective(portal.statement), portal.plan);
        else portal.plan.clear();  // NoData
        portal.planned = true;
      }
      expects_.pop_front();
      if (!injected) out.ref(m.bytes);
      return true;
    }
    case msg::kDataRow: {
      if (front->kind != Expect::Execute) {
        fatalCode_ = protocol::sqlstate::kProtocolViolation;
        fatalMessage_ = "pgveil: rows outside of an Execute";
        return false;
      }
      const auto& portal = front->portalState;
      if (!portal || !portal->planned) {
        fatalCode_ = protocol::sqlstate::kProtocolViolation;
        fatalMessage_ = "pgveil: rows of a portal without a row description";
        return false;
      }
      if (current_ != &portal->count) beginResult(&portal->count, portal->analysis, effective(portal->statement));
      return forwardDataRow(m, portal->plan, out);
    }
    case msg::kCopyOutResponse:
    case msg::kCopyData:
    case msg::kCopyDone:
    case msg::kCopyBothResponse:
    case msg::kCopyInResponse: {
      const masking::StatementAnalysis* stmt = nullptr;
      if (front->kind == Expect::Execute && front->portalState) {
        stmt = effective(front->portalState->statement);
        if (current_ != &front->portalState->count) {
          beginResult(&front->portalState->count, front->portalState->analysis, stmt);
        }
      }
      return onCopyMessage(m, stmt, out);
    }
    case msg::kCommandComplete:
    case msg::kPortalSuspended:
    case msg::kEmptyQuery:
      copying_ = false;
      if (front->kind == Expect::Execute) {
        // What the statement did (PREPARE, DECLARE, CLOSE, COMMIT, ...) takes effect after its
        // result: held here, since the queue entry is popped below.
        std::shared_ptr<const masking::Analysis> ran;
        std::shared_ptr<const masking::Analysis> maybeRan;
        if (m.type == msg::kCommandComplete && front->portalState) {
          ran = front->portalState->analysis;
          if (!ran) maybeRan = front->portalState->unverified;
        }
        if (front->portalState && m.type != msg::kPortalSuspended) {
          if (current_ != &front->portalState->count) {
            beginResult(&front->portalState->count, front->portalState->analysis,
                        effective(front->portalState->statement));
          }
          endOfResult();
          completeResult(m, out);
        } else {
          out.ref(m.bytes);
        }
        current_ = &simpleCount_;
        expects_.pop_front();
        // A portal without a statement is a cursor (DECLARE, or opened by a function): a query,
        // which prepares, declares and sets nothing.
        if (ran && !ran->statements.empty()) afterStatement(ran, &ran->statements[0], m.payload);
        else if (maybeRan && !maybeRan->statements.empty()) forgetEffects(maybeRan->statements[0], m.payload);
        return true;
      }
      out.ref(m.bytes);
      return true;
    case msg::kErrorResponse: {
      // The server now skips everything up to the next Sync, and what this batch prepared or
      // bound did not happen.
      std::string refusal = front->refusal;
      if (pendingRows_) flushWindow();
      current_ = &simpleCount_;
      popUntilSync();
      rollbackToConfirmed();
      copying_ = false;
      scrubError(m, out, refusal.empty() ? nullptr : &refusal);
      return true;
    }
    case msg::kReadyForQuery:
      // Sync answered; anything still ahead of it was skipped by the server.
      txStatus_ = m.payload.empty() ? 'I' : m.payload[0];
      while (!expects_.empty() && expects_.front().kind != Expect::Sync) expects_.pop_front();
      if (!expects_.empty()) expects_.pop_front();
      if (m.payload == "I") {
        releasePortals();
        cursors_.clear();
      }
      out.ref(m.bytes);
      return true;
    default:
      out.ref(m.bytes);
      return true;
  }
}

}  // namespace pgveil::proxy
