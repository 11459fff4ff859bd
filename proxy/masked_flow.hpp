#pragma once
// The message-level state machine of a masked session. Client side: every Query, Parse and
// FunctionCall goes through the analyzer and the gate; a refused one is replaced by a statement
// that fails on the server, so that transaction state and the extended protocol's
// error-until-Sync behaviour stay exactly PostgreSQL's, and the server's error is then replaced
// by pgveil's 42501. Server side: a queue of expected responses attributes every RowDescription,
// DataRow and COPY stream to its statement; rows are rewritten by the result plan; errors,
// notices, notifications and parameter reports are scrubbed.

#include <deque>
#include <map>
#include <memory>
#include <string>

#include "masking/analysis.hpp"
#include "masking/policy.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "proxy/out_batch.hpp"
#include "proxy/shared_state.hpp"

namespace pgveil::proxy {

struct SessionIdentity {
  std::uint64_t sessionId = 0;
  std::string user;
  std::string database;
  std::string clientAddr;
  std::string applicationName;
  std::shared_ptr<SessionInfo> info;
};

class MaskedFlow {
 public:
  MaskedFlow(SharedState& shared, Worker& worker, std::shared_ptr<const masking::Policy> policy,
             std::shared_ptr<const masking::Catalog> catalog, SessionIdentity identity);

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

 private:
  enum class Expect { SimpleQuery, Parse, Bind, DescribeStatement, DescribePortal, Execute, Close, Sync };
  struct Portal;
  struct Expected {
    Expect kind;
    std::shared_ptr<const masking::Analysis> analysis;  // SimpleQuery
    std::string portal;                                 // DescribePortal, Execute
    bool injected = false;                              // a Describe pgveil added: swallow its answer
    std::string refusal;                                // refused statement: pgveil's message
    // The portal as bound when the client sent the message: a pipelined client may bind the
    // same (unnamed) portal again before the server has answered.
    std::shared_ptr<Portal> portalState;
    std::string name;  // Parse: statement name; Bind: portal name (committed on completion)
  };
  struct Portal {
    std::shared_ptr<const masking::Analysis> analysis;  // keeps `statement` alive
    const masking::StatementAnalysis* statement = nullptr;
    bool described = false;
    bool planned = false;
    masking::ResultPlan plan;
  };
  struct Prepared {
    std::shared_ptr<const masking::Analysis> analysis;
    const masking::StatementAnalysis* statement = nullptr;
  };
  enum class CopyFormat { Text, Csv, Binary };

  std::shared_ptr<const masking::Analysis> analyze(std::string_view sql);
  void refreshSnapshot();
  void trackStatement(const std::shared_ptr<const masking::Analysis>& a, const masking::StatementAnalysis& s);
  void rollbackToConfirmed();
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
  bool exfiltrationBlocks(const masking::Analysis& a, masking::Verdict& verdict);
  void countRow(std::size_t bytes);
  void endOfResult();

  SharedState& shared_;
  Worker& worker_;
  std::shared_ptr<const masking::Policy> policy_;
  std::shared_ptr<const masking::Catalog> catalog_;
  std::shared_ptr<const masking::Classification> classification_;
  SessionIdentity identity_;
  std::uint64_t contextKey_ = 0;
  std::vector<std::string> searchPath_;  // empty: unknown (resolve in every schema)
  std::string searchPathKey_;

  std::deque<Expected> expects_;
  // Protocol-level statements and portals, as the client sees them (updated when sent, used to
  // attribute later messages of the same batch) and as the server confirmed them (updated on
  // ParseComplete/BindComplete). A failed batch rolls the client view back to the confirmed one.
  std::map<std::string, Prepared> statements_;
  std::map<std::string, Prepared> confirmedStatements_;
  std::map<std::string, std::shared_ptr<Portal>> portals_;
  std::map<std::string, std::shared_ptr<Portal>> confirmedPortals_;
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
  std::string fatalCode_;
  std::string fatalMessage_;
  std::uint64_t refusals_ = 0;
  std::uint64_t rowsMasked_ = 0;
  // The result streaming now: for large-pull alerts.
  std::uint64_t resultRows_ = 0;
  std::uint64_t resultBytes_ = 0;
  std::shared_ptr<const masking::Analysis> resultAnalysis_;
};

}  // namespace pgveil::proxy
