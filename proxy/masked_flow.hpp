#pragma once
// The message-level state machine of a masked session. Client side: every Query, Parse and
// FunctionCall goes through the analyzer and the gate; a refused one is replaced by a statement
// that fails on the server, so that transaction state and the extended protocol's
// error-until-Sync behaviour stay exactly PostgreSQL's, and the server's error is then replaced
// by pgveil's 42501. Server side: a queue of expected responses attributes every RowDescription,
// DataRow and COPY stream to its statement; rows are rewritten by the result plan; errors,
// notices, notifications and parameter reports are scrubbed.

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "masking/analysis.hpp"
#include "masking/exfiltration.hpp"
#include "masking/policy.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "proxy/out_batch.hpp"
#include "proxy/ring_queue.hpp"
#include "proxy/shared_state.hpp"

namespace pgveil::proxy {

struct SessionIdentity {
  std::uint64_t sessionId = 0;
  std::string certificateCn;
  std::string user;
  std::string database;
  std::string clientAddr;
  std::string applicationName;
  std::shared_ptr<SessionInfo> info;
};

class MaskedFlow {
 public:
  MaskedFlow(SharedState& shared, Worker& worker, std::shared_ptr<const Rules> rules,
             std::shared_ptr<const masking::Policy> policy, std::shared_ptr<const masking::Catalog> catalog,
             SessionIdentity identity);
  ~MaskedFlow();
  MaskedFlow(const MaskedFlow&) = delete;
  MaskedFlow& operator=(const MaskedFlow&) = delete;

  [[nodiscard]] bool clientNeedsWhole(char type) const;
  [[nodiscard]] bool serverNeedsWhole(char type) const;

  // Handles one whole client message: appends what goes upstream. False: a fatal error, with
  // fatalMessage() for the client.
  bool onClientMessage(const protocol::Message& m, OutBatch& out);
  // Handles one whole server message: appends what goes to the client.
  bool onServerMessage(const protocol::Message& m, OutBatch& out);

  [[nodiscard]] const std::string& fatalCode() const { return fatalCode_; }
  [[nodiscard]] const std::string& fatalMessage() const { return fatalMessage_; }
  [[nodiscard]] std::uint64_t refusals() const { return refusals_; }
  [[nodiscard]] std::uint64_t rowsMasked() const { return rowsMasked_; }
  // A limit was breached in error mode: the session sends a CancelRequest upstream (once).
  [[nodiscard]] bool takeCancelRequest() {
    bool r = cancelWanted_;
    cancelWanted_ = false;
    return r;
  }
  // Whether the current rules still inspect this role (false after a reload made it plain).
  [[nodiscard]] const std::string& policyRole() const { return policy_->role(); }

 private:
  enum class Expect { SimpleQuery, Parse, Bind, DescribeStatement, DescribePortal, Execute, Close, Sync };
  struct Portal;
  // Rows and bytes of one result (a simple query's statement, or a portal across Executes).
  struct ResultCount {
    std::uint64_t rows = 0;
    std::uint64_t bytes = 0;
    std::uint64_t forwarded = 0;  // rows sent to the client
    bool truncated = false;
    bool alerted = false;          // a monitor-mode breach already alerted for this result
    std::string limit;             // the limit that truncated it
  };
  struct Expected {
    Expect kind;
    std::shared_ptr<const masking::Analysis> analysis;  // SimpleQuery
    std::string portal;                                 // DescribePortal, Execute
    bool injected = false;                              // a Describe pgveil added: swallow its answer
    std::string refusal;                                // refused statement: pgveil's message
    // The portal as bound when the client sent the message: a pipelined client may bind the
    // same (unnamed) portal again before the server has answered.
    std::shared_ptr<Portal> portalState;
    std::string name;  // Parse: statement name; Bind, Close: portal or statement name
    char target = 0;   // Close: 'S' statement, 'P' portal
    // DescribePortal of a portal bound before a possible change of portals (see clientEpoch_):
    // its statement is trusted only if the server still has that same portal.
    bool verify = false;
  };
  struct Portal {
    std::shared_ptr<const masking::Analysis> analysis;  // keeps `statement` alive
    const masking::StatementAnalysis* statement = nullptr;
    bool described = false;
    bool planned = false;
    masking::ResultPlan plan;
    ResultCount count;
    std::uint64_t epoch = 0;     // clientEpoch_ when bound, or last verified
    std::string boundStatement;  // the prepared statement named in the Bind
    // The statement it was bound to, when a verification found the server's portal may be
    // another one: only what that statement could make pgveil forget is applied when it runs.
    std::shared_ptr<const masking::Analysis> unverified;
    // As new, but the plan keeps its storage (a portal object is reused by the next Bind).
    // Every member must be reset here.
    void reset() {
      analysis.reset();
      statement = nullptr;
      described = false;
      planned = false;
      plan.clear();
      count = {};
      epoch = 0;
      boundStatement.clear();
      unverified.reset();
    }
  };
  struct Prepared {
    std::shared_ptr<const masking::Analysis> analysis;
    const masking::StatementAnalysis* statement = nullptr;
  };
  // Portals by name. The unnamed portal, which every extended-protocol query binds again, has
  // a slot of its own: binding it allocates no map node. An empty pointer is an absent portal.
  class PortalTable {
   public:
    [[nodiscard]] const std::shared_ptr<Portal>* find(std::string_view name) const {
      if (name.empty()) return unnamed_ ? &unnamed_ : nullptr;
      auto it = named_.find(name);
      return it == named_.end() ? nullptr : &it->second;
    }
    // The portal's entry, created empty when absent.
    std::shared_ptr<Portal>& slot(std::string_view name) {
      if (name.empty()) return unnamed_;
      auto it = named_.find(name);
      return it != named_.end() ? it->second : named_.emplace(std::string(name), nullptr).first->second;
    }
    void erase(std::string_view name) {
      if (name.empty()) unnamed_.reset();
      else if (auto it = named_.find(name); it != named_.end()) named_.erase(it);
    }
    void clear() {
      unnamed_.reset();
      named_.clear();
    }
    [[nodiscard]] bool empty() const { return !unnamed_ && named_.empty(); }
    std::shared_ptr<Portal>& unnamed() { return unnamed_; }

   private:
    std::shared_ptr<Portal> unnamed_;
    std::map<std::string, std::shared_ptr<Portal>, std::less<>> named_;
  };
  enum class CopyFormat { Text, Csv, Binary };

  std::shared_ptr<const masking::Analysis> analyze(std::string_view sql);
  // Picks up a newer catalog and newer rules; false (fatalCode_ set) when the session cannot go
  // on under the new rules.
  bool refreshSnapshot();
  bool nearWindowLimit() const;
  bool workQueuedBehind() const;
  void trackStatement(const std::shared_ptr<const masking::Analysis>& a, const masking::StatementAnalysis& s);
  void rollbackToConfirmed();
  // The transaction ended: its portals are gone.
  void releasePortals();
  // Re-applies what the client prepared, bound and closed after the last answered Sync (a
  // pipelining client), on top of the confirmed state.
  void replayPending();
  // Resets `portal` and keeps it for the next Bind when nothing else refers to it.
  void keepAsSpare(std::shared_ptr<Portal>& portal);
  std::shared_ptr<Portal> newPortal();
  // The client-side portal for Describe/Execute; `verify`: bound before the last possible change
  // of portals, so the server's portal of that name may be another one.
  std::shared_ptr<Portal>& portalForUse(std::string_view name, bool& verify);
  // Executing this statement may close, create or end the transaction of portals.
  static bool changesPortals(const masking::StatementAnalysis* s);
  // A statement ran (CommandComplete): tracks what it prepared, declared or closed, and forgets
  // the confirmed portals it may have closed.
  void afterStatement(const std::shared_ptr<const masking::Analysis>& a, const masking::StatementAnalysis* s,
                      std::string_view tag);
  // A statement pgveil cannot attribute ran: forget what it may have prepared, declared, closed
  // or set (later uses are masked as unattributed).
  void forgetTracking();
  // What `s` may have changed, forgotten rather than recorded (a statement that may or may not
  // be the one that ran).
  void forgetEffects(const masking::StatementAnalysis& s, std::string_view tag);
  void forgetPrepared(const std::string& name);
  // Sets search_path tracking (empty: unknown) and the analysis cache's context for it.
  void setSearchPath(std::vector<std::string> path);
  static bool changesSearchPath(const masking::Analysis& a);
  bool expectFront(Expect kind);
  bool malformed(const char* what);
  const masking::StatementAnalysis* effective(const masking::StatementAnalysis* s) const;
  void refuse(OutBatch& out, char type, std::string_view statementName, const masking::Verdict& v,
              const masking::Analysis& a);
  void planFromRowDescription(std::string_view payload, const masking::StatementAnalysis* stmt, masking::ResultPlan& plan);
  bool forwardDataRow(const protocol::Message& m, const masking::ResultPlan& plan, OutBatch& out);
  void scrubError(const protocol::Message& m, OutBatch& out, const std::string* replacement);
  void startCopy(std::string_view payload, const masking::StatementAnalysis* stmt);
  bool forwardCopyData(const protocol::Message& m, OutBatch& out);
  bool onCopyMessage(const protocol::Message& m, const masking::StatementAnalysis* stmt, OutBatch& out);
  void popUntilSync();
  void alert(const std::string& rule, const std::string& action, const masking::Analysis* a, std::uint64_t rows = 0,
             std::uint64_t bytes = 0);
  // Exfiltration rules after the gate allowed a statement: true when one blocks it.
  bool exfiltrationBlocks(const masking::Analysis& a, std::string_view text, masking::Verdict& verdict);
  enum class Admit { Forward, Drop, Fatal };
  // Accounts one row against canaries and limits. Drop: not forwarded (out may then hold the
  // breach error); Fatal: a canary hit, fatalCode_ is set.
  Admit admitRow(std::string_view payload, std::size_t bytes, OutBatch& out);
  void beginResult(ResultCount* count, std::shared_ptr<const masking::Analysis> analysis,
                   const masking::StatementAnalysis* stmt);
  void flushDistinct();
  bool admit(const protocol::Message& m, OutBatch& out, bool& result);
  void countMasked(std::size_t bytes);
  // Adds the rows counted since the last call to the shared counters (metrics, /sessions).
  void flushCounts();
  bool handleServerMessage(const protocol::Message& m, OutBatch& out);
  void endOfResult();
  // At a result's CommandComplete: appends it (rewritten when the result was truncated).
  void completeResult(const protocol::Message& m, OutBatch& out);
  void flushWindow();
  void applyRules();
  void recordEnumeration(const masking::Analysis& a, std::string_view text,
                         std::vector<masking::ExfiltrationFinding>& findings);
  bool readsClassified(const masking::StatementAnalysis* s) const;
  bool monitorMode() const;
  void countVerdict(const masking::Verdict& v);

  SharedState& shared_;
  Worker& worker_;
  std::shared_ptr<const Rules> rules_;
  std::shared_ptr<const masking::Policy> policy_;
  bool masked_ = true;                          // false: an unmasked role inspected for limits and rules
  const config::LimitsConfig* limits_ = nullptr;
  PerWorker<RoleCounters>* counters_ = nullptr;
  RoleCounters& counters() { return counters_->local(); }  // this worker's copy
  const masking::CanaryMatcher* canaries_ = nullptr;  // null: not checked for this role
  bool exempt_ = false;                          // exfiltration rules do not apply
  bool distinctOn_ = false;                      // the distinct_rows rule counts this role's rows
  std::shared_ptr<const masking::Catalog> catalog_;
  std::uint64_t catalogPublished_ = 0;                     // CatalogService::published() when last asked
  std::chrono::steady_clock::time_point catalogRecheck_{};  // ask again by then even so
  std::shared_ptr<const masking::Classification> classification_;
  SessionIdentity identity_;
  std::uint64_t contextKey_ = 0;
  std::vector<std::string> searchPath_;  // empty: unknown (resolve in every schema)
  std::string searchPathKey_;

  RingQueue<Expected> expects_;
  // Protocol-level statements and portals, as the client sees them (updated when sent, used to
  // attribute later messages of the same batch) and as the server confirmed them (updated on
  // ParseComplete/BindComplete). A failed batch rolls the client view back to the confirmed one.
  std::map<std::string, Prepared> statements_;
  std::map<std::string, Prepared> confirmedStatements_;
  PortalTable portals_;
  PortalTable confirmedPortals_;
  // Counts, in the client's stream, the points after which a portal name may denote another
  // portal by the time the server runs what follows: a Sync or Query (the transaction may end),
  // and an Execute of a statement that may close or declare portals or end the transaction.
  // A Describe/Execute of a portal bound in an earlier epoch is verified (Expected::verify).
  std::uint64_t clientEpoch_ = 0;
  // Finished unnamed portals kept for the next Binds, with their plans' storage (no allocation
  // per extended-protocol query). Two: in a transaction block, the portal a Bind replaces is
  // released only when the next Bind completes, so one is in use while the other waits.
  std::array<std::shared_ptr<Portal>, 2> spares_;
  std::size_t spareCount_ = 0;
  std::map<std::string, Prepared> sqlPrepared_;  // PREPARE name AS ...
  std::map<std::string, Prepared> cursors_;      // DECLARE name CURSOR FOR ...

  // The result currently streaming in a simple query.
  std::size_t simpleIndex_ = 0;
  masking::ResultPlan simplePlan_;
  bool simplePlanned_ = false;
  bool refusalSent_ = false;
  // COPY TO in progress.
  bool copying_ = false;
  bool copyIn_ = false;  // the server is in COPY FROM STDIN mode
  CopyFormat copyFormat_ = CopyFormat::Text;
  masking::ResultPlan copyPlan_;
  bool copyHeaderPending_ = false;  // binary: signature still to come; CSV: header line to skip
  char copyDelimiter_ = '\t';
  std::string copyHeaderLine_;

  std::string scratch_;
  std::string scratch2_;
  // Decoded message views, reused so that their vectors keep their capacity (valid only
  // within the call that decodes into them).
  protocol::BindMsg bindScratch_;
  protocol::RowDescriptionMsg rowDescriptionScratch_;
  std::string fatalCode_;
  std::string fatalMessage_;
  std::uint64_t refusals_ = 0;
  std::uint64_t rowsMasked_ = 0;
  // Row counts not yet added to the shared atomics: one atomic add per counter per result (or
  // per 256 rows) instead of eight per row, several of them on cache lines other threads share.
  struct PendingCounts {
    std::uint64_t rows = 0, bytes = 0, rowsMasked = 0, bytesMasked = 0;
  } pending_;
  // The result streaming now (simple query), and the one rows are accounted to.
  ResultCount simpleCount_;
  ResultCount* current_ = &simpleCount_;
  std::shared_ptr<const masking::Analysis> resultAnalysis_;
  std::chrono::steady_clock::time_point resultStart_{};
  // Limits across results.
  std::uint64_t sessionRows_ = 0;
  std::uint64_t sessionBytes_ = 0;
  std::uint64_t pendingRows_ = 0;   // not yet added to the shared windows
  std::uint64_t pendingBytes_ = 0;
  masking::SlidingWindows::Totals roleWindow_;
  masking::SlidingWindows::Totals clientWindow_;
  std::string windowKey_;
  std::string clientWindowKey_;
  char txStatus_ = 'I';             // as of the last ReadyForQuery
  bool discardUntilReady_ = false;  // after an error-mode breach: the client already has its error
  bool cancelWanted_ = false;
  std::unique_ptr<masking::DistinctSketch> distinct_;
  std::uint64_t distinctPending_ = 0;
  bool distinctAlerted_ = false;
  bool currentClassified_ = false;  // the current result reads a classified relation
};

}  // namespace pgveil::proxy
