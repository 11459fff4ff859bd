#include "proxy/webhook.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace pgveil::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);
}

struct Webhook::Impl {
  explicit Impl(const config::WebhookConfig& c, Webhook& o) : cfg(c), owner(o) {}
  config::WebhookConfig cfg;
  Webhook& owner;
  asio::io_context ioc{1};
  asio::steady_timer wake{ioc, asio::steady_timer::time_point::max()};
  std::mutex mutex;
  std::condition_variable idle;
  std::deque<std::string> queue;
  bool busy = false;
  bool stopping = false;
  std::thread thread;

  // One POST; true on a 2xx answer.
  asio::awaitable<bool> deliver(const std::string& body) {
    beast::tcp_stream stream(ioc);
    tcp::resolver resolver(ioc);
    asio::steady_timer limit(ioc, cfg.timeout);
    auto resolved = co_await (resolver.async_resolve(cfg.host, cfg.port, kUse) || limit.async_wait(kUse));
    if (resolved.index() != 0 || std::get<0>(std::get<0>(resolved))) co_return false;
    auto results = std::get<1>(std::get<0>(resolved));
    stream.expires_after(cfg.timeout);
    auto [cec, ep] = co_await stream.async_connect(results, kUse);
    if (cec) co_return false;
    http::request<http::string_body> req{http::verb::post, cfg.target, 11};
    req.set(http::field::host, cfg.host);
    req.set(http::field::user_agent, "pgveil");
    req.set(http::field::content_type, "application/json");
    req.keep_alive(false);
    req.body() = body;
    req.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, req, kUse);
    if (wec) co_return false;
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024);
    auto [rdec, rn] = co_await http::async_read(stream, buffer, parser, kUse);
    if (rdec) co_return false;
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    auto status = parser.get().result_int();
    co_return status >= 200 && status < 300;
  }

  asio::awaitable<void> run() {
    for (;;) {
      std::string body;
      {
        std::unique_lock lock(mutex);
        if (queue.empty()) {
          busy = false;
          idle.notify_all();
          if (stopping) co_return;
        } else {
          body = std::move(queue.front());
          queue.pop_front();
          busy = true;
        }
      }
      if (body.empty()) {
        wake.expires_at(asio::steady_timer::time_point::max());
        co_await wake.async_wait(kUse);
        continue;
      }
      auto backoff = cfg.backoff;
      bool ok = false;
      for (std::uint32_t attempt = 0; attempt <= cfg.retries && !ok; ++attempt) {
        if (attempt > 0) {
          owner.retried_.fetch_add(1);
          asio::steady_timer t(ioc, backoff);
          co_await t.async_wait(kUse);
          backoff *= 2;
        }
        ok = co_await deliver(body);
      }
      if (ok) {
        owner.sent_.fetch_add(1);
      } else {
        owner.failed_.fetch_add(1);
        spdlog::warn("alert webhook {}:{}{} did not accept an alert after {} attempts", cfg.host, cfg.port, cfg.target,
                     cfg.retries + 1);
      }
    }
  }
};

Webhook::Webhook(const config::WebhookConfig& cfg) : impl_(std::make_unique<Impl>(cfg, *this)) {
  asio::co_spawn(impl_->ioc, impl_->run(), asio::detached);
  impl_->thread = std::thread([this] {
    try {
      impl_->ioc.run();
    } catch (const std::exception& e) {
      spdlog::error("alert webhook thread failed: {}", e.what());
    }
  });
}

Webhook::~Webhook() {
  {
    std::unique_lock lock(impl_->mutex);
    impl_->stopping = true;
    // Give queued alerts one delivery timeout to go out.
    impl_->idle.wait_for(lock, impl_->cfg.timeout, [&] { return impl_->queue.empty() && !impl_->busy; });
  }
  asio::post(impl_->ioc, [i = impl_.get()] { i->wake.cancel(); });
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void Webhook::post(std::string json) {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->queue.size() >= impl_->cfg.queueSize) {
      dropped_.fetch_add(1);
      return;
    }
    impl_->queue.push_back(std::move(json));
  }
  asio::post(impl_->ioc, [i = impl_.get()] { i->wake.cancel(); });
}

}  // namespace pgveil::proxy
