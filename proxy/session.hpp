#pragma once
// One client connection: startup (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage),
// upstream connect and TLS, authentication relay, then one coroutine per direction.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "proxy/shared_state.hpp"

namespace pgveil::proxy {

// Runs a session to completion on the worker's thread. Never throws for I/O or protocol errors.
boost::asio::awaitable<void> runSession(SharedState& shared, Worker& worker, boost::asio::ip::tcp::socket socket);

// Asks every session of this worker to end with 57P01 (admin shutdown). Call on the worker's thread.
void terminateSessions(Worker& worker);

// Makes reads waiting on connections the kernel has closed (a reset that came with the last
// data) report it: see Stream::wakeReaderIfReset. Looks at the sessions whose id is `slice`
// modulo `slices`, so that a worker with many sessions spreads the look over several calls.
// Call on the worker's thread.
void wakeReadersOfResetConnections(Worker& worker, unsigned slice, unsigned slices);

// After a configuration reload: ends plain-relay sessions whose role the new rules inspect.
// Call on the worker's thread.
void reloadSessions(Worker& worker, const std::shared_ptr<const Rules>& rules);

}  // namespace pgveil::proxy
