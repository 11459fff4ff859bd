// libFuzzer target for every protocol decoder: startup packets, framing, and typed messages.
// Decoders must never read out of bounds, crash or hang on any input.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/encode.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "protocol/startup.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace pgveil::protocol;
  std::string_view in(reinterpret_cast<const char*>(data), size);

  std::uint32_t len = 0;
  if (peekStartupLength(in, kMaxStartupPacket, len) == StartupStatus::Ok && len <= in.size()) {
    auto sp = decodeStartup(in.substr(0, len));
    if (sp.kind == StartupKind::Startup) (void)encodeStartup(sp.code, sp.params);
  }
  // Walk the input as a stream of typed messages and decode each with every decoder.
  std::string_view rest = in;
  for (int i = 0; i < 64; ++i) {
    FrameHeader h;
    if (peekHeader(rest, 1 << 20, h) != HeaderStatus::Ok || rest.size() < h.total()) break;
    auto payload = rest.substr(kHeaderSize, h.payloadSize());
    QueryMsg q;
    ParseMsg p;
    BindMsg b;
    DescribeMsg d;
    ExecuteMsg e;
    CloseMsg c;
    AuthenticationMsg a;
    BackendKeyDataMsg k;
    ParameterStatusMsg ps;
    ReadyForQueryMsg z;
    RowDescriptionMsg t;
    DataRowMsg dr;
    CommandCompleteMsg cc;
    ErrorMsg em;
    CopyResponseMsg cr;
    NotificationMsg n;
    (void)decodeQuery(payload, q);
    (void)decodeParse(payload, p);
    (void)decodeBind(payload, b);
    (void)decodeDescribe(payload, d);
    (void)decodeExecute(payload, e);
    (void)decodeClose(payload, c);
    if (decodeAuthentication(payload, a) && a.code == auth::kSasl) {
      std::string out;
      appendAuthenticationSasl(out, a.saslMechanisms);
    }
    (void)decodeBackendKeyData(payload, k);
    (void)decodeParameterStatus(payload, ps);
    (void)decodeReadyForQuery(payload, z);
    (void)decodeRowDescription(payload, t);
    if (decodeDataRow(payload, dr)) {
      std::string out;
      appendDataRow(out, dr.columns);
    }
    (void)decodeCommandComplete(payload, cc);
    if (decodeError(payload, em)) {
      std::string out;
      appendErrorFields(out, 'E', em.fields);
    }
    (void)decodeCopyResponse(payload, cr);
    (void)decodeNotification(payload, n);
    rest.remove_prefix(h.total());
  }
  return 0;
}
