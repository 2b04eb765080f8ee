// A small HTTP/1.1 load generator for keywardend's POST /v1/tokens/verify:
// keep-alive connections on loopback, driven by a few event-loop threads
// (epoll, non-blocking sockets), latency per request, optional fixed rate.
//
//   load_gen --port P --token-file F --connections C --seconds S
//            [--threads T] [--host 127.0.0.1] [--rate R] [--warmup W] [--sched-batch]
//            [--json FILE]
//
// Why event loops: the client shares this machine's cores with keywardend.
// A thread blocked in recv() per connection costs a wake-up and a context
// switch per answer; one loop per core serves every ready connection from
// one epoll_wait, so more of the machine is left to the server under test.
// T defaults to 1; connection i belongs to loop i % T.
//
// Closed loop (no --rate): every connection sends its next request as soon as
// the previous answer is in; latency is send -> complete answer.
//
// Fixed rate (--rate R requests/s in total): connection i sends its k-th
// request at start + (k*C + i)/R. Latency is measured from that intended send
// time, not from when the socket was free, so a stalled server shows up as
// latency instead of silently lowering the offered load (no coordinated
// omission). The achieved rate is reported next to the target.
//
// On a machine the client shares with the server, that latency also holds
// the client's own lateness: a request whose connection was free at its send
// time may still leave late, because the client's thread was not running
// (timer slack, a CPU busy with the server). Two more figures tell the
// parts apart: latency from the moment the request really left
// ("from_send"), and how late the client sent on a free connection
// ("client_late"). Both are diagnostics; "latency" stays the measure.
//
// --sched-batch runs the client under SCHED_BATCH (same CPU share, but its
// wake-ups do not preempt a running thread). On a machine where client and
// server share the cores, an answer arriving wakes the client, which then
// preempts an HTTP worker mid-request; this option shows how much of the
// server's throughput that costs. It is a diagnostic for closed-loop runs:
// under a fixed rate the client would send late, which shows up as latency.
//
// An answer counts as ok when it is HTTP 200 with "code":"VALID". Anything
// else is counted by status and code; a closed connection is re-opened.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using SteadyClock = std::chrono::steady_clock;
using json = nlohmann::json;

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    std::string token_file;
    int connections = 1;
    int threads = 1;
    double seconds = 3;
    double rate = 0;  // 0: closed loop
    double warmup = 0.5;
    bool sched_batch = false;
    std::string json_path;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--host")
            o.host = next();
        else if (a == "--port")
            o.port = std::stoi(next());
        else if (a == "--token-file")
            o.token_file = next();
        else if (a == "--connections")
            o.connections = std::stoi(next());
        else if (a == "--threads")
            o.threads = std::stoi(next());
        else if (a == "--seconds")
            o.seconds = std::stod(next());
        else if (a == "--rate")
            o.rate = std::stod(next());
        else if (a == "--warmup")
            o.warmup = std::stod(next());
        else if (a == "--json")
            o.json_path = next();
        else if (a == "--sched-batch")
            o.sched_batch = true;
        else
            throw std::invalid_argument("unknown argument " + a);
    }
    if (o.port <= 0 || o.token_file.empty() || o.connections < 1 || o.connections > 1024 || o.threads < 1 ||
        o.seconds <= 0) {
        throw std::invalid_argument(
            "usage: load_gen --port P --token-file F --connections C --seconds S [--threads T] [--rate R] [--warmup W] "
            "[--sched-batch] [--json FILE]");
    }
    return o;
}

// One keep-alive connection in an event loop: at most one request in flight.
class Connection {
public:
    Connection(const std::string& host, int port, int epfd, std::size_t index)
        : host_(host), port_(port), epfd_(epfd), index_(index) {
        open();
    }
    ~Connection() { close(); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Sends `request` (whole, or the connection is re-opened once).
    bool send(const std::string& request, SteadyClock::time_point t0) {
        t0_ = t0;
        left_ = SteadyClock::now();
        busy_ = true;
        for (int attempt = 0; attempt < 2; ++attempt) {
            if (fd_ < 0) open();
            if (send_all(request)) return true;
            reopen();
        }
        busy_ = false;
        return false;
    }
    enum class Read { more, answer, failed };
    // Reads what is there; `answer` when a whole response is in (status() and
    // body() hold it), `failed` when the server closed or broke the stream.
    Read on_readable() {
        for (;;) {
            char tmp[16384];
            const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
            if (n > 0) {
                buf_.append(tmp, static_cast<std::size_t>(n));
                if (static_cast<std::size_t>(n) < sizeof tmp) break;
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            reopen();
            busy_ = false;
            return Read::failed;
        }
        const int parsed = parse();
        if (parsed < 0) {
            reopen();
            busy_ = false;
            return Read::failed;
        }
        if (parsed == 0) return Read::more;
        busy_ = false;
        return Read::answer;
    }
    // An idle connection has nothing to read but its end: re-opened lazily.
    void on_idle_readable() {
        char tmp[256];
        const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) reopen();
    }
    [[nodiscard]] bool busy() const noexcept { return busy_; }
    [[nodiscard]] SteadyClock::time_point sent_at() const noexcept { return t0_; }
    /// When the request really left (after sent_at() when the client was late).
    [[nodiscard]] SteadyClock::time_point left_at() const noexcept { return left_; }
    [[nodiscard]] int status() const noexcept { return status_; }
    [[nodiscard]] const std::string& body() const noexcept { return body_; }
    [[nodiscard]] std::size_t index() const noexcept { return index_; }
    std::uint64_t reconnects = 0;
    std::uint64_t next_k = 0;               // fixed rate: the next request's number
    SteadyClock::time_point answered_at{};  // when the last answer was taken in

private:
    void open() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        if (::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr) != 1)
            throw std::runtime_error("bad IPv4 address " + host_);
        // Blocking connect (loopback, at start or after a close), then
        // non-blocking for the event loop.
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            const int e = errno;
            close();
            throw std::runtime_error("connect " + host_ + ":" + std::to_string(port_) + ": " + std::strerror(e));
        }
        ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = this;
        if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd_, &ev) != 0)
            throw std::runtime_error(std::string("epoll_ctl: ") + std::strerror(errno));
        buf_.clear();
    }
    void close() {
        if (fd_ >= 0) ::close(fd_);  // also leaves the epoll set
        fd_ = -1;
    }
    void reopen() {
        close();
        ++reconnects;
    }
    bool send_all(const std::string& s) {
        std::size_t off = 0;
        while (off < s.size()) {
            const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (n > 0) {
                off += static_cast<std::size_t>(n);
            } else if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
                pollfd p{fd_, POLLOUT, 0};
                ::poll(&p, 1, 1000);  // a request is a few hundred bytes: never in practice
            } else {
                return false;
            }
        }
        return true;
    }
    // 1: one whole response parsed (and removed from buf_); 0: need more; -1: garbage.
    int parse() {
        const std::size_t hdr_end = buf_.find("\r\n\r\n");
        if (hdr_end == std::string::npos) return 0;
        if (buf_.size() < 12 || buf_.compare(0, 5, "HTTP/") != 0) return -1;
        status_ = static_cast<int>(std::strtol(buf_.c_str() + 9, nullptr, 10));
        std::size_t length = 0;
        bool close_after = false;
        std::size_t pos = buf_.find("\r\n") + 2;
        while (pos < hdr_end) {
            const std::size_t eol = buf_.find("\r\n", pos);
            std::string lower = buf_.substr(pos, eol - pos);
            std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
            if (lower.rfind("content-length:", 0) == 0) length = std::stoul(lower.substr(15));
            if (lower.rfind("connection:", 0) == 0 && lower.find("close") != std::string::npos) close_after = true;
            pos = eol + 2;
        }
        const std::size_t total = hdr_end + 4 + length;
        if (buf_.size() < total) return 0;
        body_.assign(buf_, hdr_end + 4, length);
        buf_.erase(0, total);
        if (close_after) close();  // the next send opens a new one
        return 1;
    }

    std::string host_;
    int port_;
    int epfd_;
    std::size_t index_;
    int fd_ = -1;
    std::string buf_;
    std::string body_;
    int status_ = 0;
    bool busy_ = false;
    SteadyClock::time_point t0_;
    SteadyClock::time_point left_;
};

std::string read_token(const std::string& path) {
    std::ifstream in(path);
    std::string t;
    std::getline(in, t);
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    if (t.empty()) throw std::runtime_error("no token in " + path);
    return t;
}

std::string outcome_of(int status, const std::string& body) {
    if (status == 0) return "connection_error";
    auto p = body.find("\"code\":\"");
    std::string code = p == std::string::npos ? "?" : body.substr(p + 8, body.find('"', p + 8) - p - 8);
    return std::to_string(status) + " " + code;
}

double pct_us(std::vector<std::int64_t>& v, double p) {
    if (v.empty()) return 0;
    auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return static_cast<double>(v[k]) / 1000.0;
}

// What one event loop measured.
struct LoopResult {
    std::vector<std::int64_t> latency_ns;      // from the intended send time
    std::vector<std::int64_t> from_send_ns;    // from when the request left
    std::vector<std::int64_t> client_late_ns;  // left - max(intended, previous answer)
    std::uint64_t behind_answer = 0;           // intended while its connection still waited
    std::map<std::string, std::uint64_t> outcomes;
    std::uint64_t reconnects = 0;
    std::uint64_t sent = 0;  // warm-up included
    std::string error;
};

struct Schedule {
    SteadyClock::time_point start, measure_from, end;
    double rate = 0;  // 0: closed loop
    int connections = 1;

    [[nodiscard]] SteadyClock::time_point intended(std::size_t conn, std::uint64_t k) const {
        const double at = (static_cast<double>(k) * connections + static_cast<double>(conn)) / rate;
        return start + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(at));
    }
};

// One event loop over its share of the connections, until the schedule ends
// and every request in flight is answered.
void run_loop(const Options& o, const std::string& request, const std::vector<std::size_t>& mine, const Schedule& sched,
              std::atomic<int>& ready, const std::atomic<bool>& go, LoopResult& out) {
    const int epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        out.error = std::string("epoll_create1: ") + std::strerror(errno);
        ++ready;
        return;
    }
    std::vector<std::unique_ptr<Connection>> conns;
    try {
        for (std::size_t i : mine) conns.push_back(std::make_unique<Connection>(o.host, o.port, epfd, i));
    } catch (const std::exception& e) {
        out.error = e.what();
        conns.clear();
        ::close(epfd);
        ++ready;
        return;
    }
    ++ready;
    while (!go.load()) std::this_thread::yield();

    const bool paced = sched.rate > 0;
    std::size_t in_flight = 0;
    auto fire = [&](Connection& c, SteadyClock::time_point t0) {
        if (c.send(request, t0)) {
            ++in_flight;
        } else {
            ++out.sent;
            if (t0 >= sched.measure_from) ++out.outcomes["connection_error"];
        }
    };
    // Sends what is due; returns when the next request of an idle connection is due.
    auto send_due = [&](SteadyClock::time_point now) {
        SteadyClock::time_point next = SteadyClock::time_point::max();
        for (auto& c : conns) {
            if (c->busy()) continue;
            if (!paced) {
                if (now < sched.end) fire(*c, now);
                continue;
            }
            const auto t = sched.intended(c->index(), c->next_k);
            if (t >= sched.end) continue;
            if (t <= now) {
                ++c->next_k;
                fire(*c, t);
            } else {
                next = std::min(next, t);
            }
        }
        return next;
    };

    std::vector<epoll_event> events(conns.size() + 1);
    auto next_due = send_due(SteadyClock::now());
    auto last_answer = SteadyClock::now();
    while (in_flight > 0 || next_due != SteadyClock::time_point::max()) {
        // Wake for the next due request, and at least once a second so a
        // server that stopped answering is noticed.
        const auto wait = std::clamp<SteadyClock::duration>(next_due - SteadyClock::now(),
                                                            SteadyClock::duration::zero(), std::chrono::seconds(1));
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
        const timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
        const int n = ::epoll_pwait2(epfd, events.data(), static_cast<int>(events.size()), &ts, nullptr);
        if (n < 0 && errno != EINTR) {
            out.error = std::string("epoll_pwait2: ") + std::strerror(errno);
            break;
        }
        const auto now = SteadyClock::now();
        for (int e = 0; e < n; ++e) {
            auto& c = *static_cast<Connection*>(events[static_cast<std::size_t>(e)].data.ptr);
            if (!c.busy()) {  // the server closed an idle connection
                c.on_idle_readable();
                continue;
            }
            const auto r = c.on_readable();
            if (r == Connection::Read::more) continue;
            --in_flight;
            ++out.sent;
            last_answer = now;
            const auto t0 = c.sent_at();
            const auto free_from = std::max(t0, c.answered_at);
            if (c.answered_at > t0 && t0 >= sched.measure_from) ++out.behind_answer;
            c.answered_at = now;
            if (t0 < sched.measure_from) continue;  // warm-up
            const auto ns = [](SteadyClock::duration d) {
                return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
            };
            out.latency_ns.push_back(ns(now - t0));
            out.from_send_ns.push_back(ns(now - c.left_at()));
            out.client_late_ns.push_back(ns(c.left_at() - free_from));
            const int status = r == Connection::Read::answer ? c.status() : 0;
            const bool ok = status == 200 && c.body().find("\"code\":\"VALID\"") != std::string::npos;
            ++out.outcomes[ok ? "ok" : outcome_of(status, c.body())];
        }
        if (in_flight > 0 && now - last_answer > std::chrono::seconds(10)) {
            out.error = "no answer for 10 s with " + std::to_string(in_flight) + " requests in flight";
            break;
        }
        next_due = send_due(now);
    }
    for (const auto& c : conns) out.reconnects += c->reconnects;
    conns.clear();
    ::close(epfd);
}

int run(const Options& o) {
    if (o.sched_batch) {
        // Before the loops start: their threads inherit the policy.
        sched_param sp{};
        if (::sched_setscheduler(0, SCHED_BATCH, &sp) != 0) {
            throw std::runtime_error(std::string("sched_setscheduler(SCHED_BATCH): ") + std::strerror(errno));
        }
    }
    const std::string token = read_token(o.token_file);
    const std::string body = "{\"token\":\"" + token + "\"}";
    std::ostringstream req;
    req << "POST /v1/tokens/verify HTTP/1.1\r\nHost: " << o.host << ":" << o.port
        << "\r\nContent-Type: application/json\r\nContent-Length: " << body.size() << "\r\n\r\n"
        << body;
    const std::string request = req.str();

    const int c = o.connections;
    const int loops = std::min(o.threads, c);
    std::vector<LoopResult> results(static_cast<std::size_t>(loops));
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    Schedule sched;
    sched.rate = o.rate;
    sched.connections = c;
    const auto dur = [](double s) {
        return std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(s));
    };

    std::vector<std::thread> ts;
    for (int t = 0; t < loops; ++t) {
        std::vector<std::size_t> mine;
        for (int i = t; i < c; i += loops) mine.push_back(static_cast<std::size_t>(i));
        ts.emplace_back(
            [&, t, mine] { run_loop(o, request, mine, sched, ready, go, results[static_cast<std::size_t>(t)]); });
    }
    while (ready.load() < loops) std::this_thread::yield();
    sched.start = SteadyClock::now();
    sched.measure_from = sched.start + dur(o.warmup);
    sched.end = sched.measure_from + dur(o.seconds);
    go = true;
    for (auto& t : ts) t.join();
    for (const auto& r : results) {
        if (!r.error.empty()) throw std::runtime_error(r.error);
    }

    std::vector<std::int64_t> all, from_send, client_late;
    std::map<std::string, std::uint64_t> total;
    std::uint64_t reconnect_total = 0, sent_total = 0, behind_answer = 0;
    for (const auto& r : results) {
        sent_total += r.sent;
        all.insert(all.end(), r.latency_ns.begin(), r.latency_ns.end());
        from_send.insert(from_send.end(), r.from_send_ns.begin(), r.from_send_ns.end());
        client_late.insert(client_late.end(), r.client_late_ns.begin(), r.client_late_ns.end());
        behind_answer += r.behind_answer;
        for (const auto& [k, v] : r.outcomes) total[k] += v;
        reconnect_total += r.reconnects;
    }
    // Requests whose intended start lies in the window; in closed loop the
    // last ones finish a little after it, which the divisor ignores (<0.1%).
    const double rate = static_cast<double>(all.size()) / o.seconds;
    const std::uint64_t ok = total.count("ok") ? total["ok"] : 0;
    json j{{"connections", c},
           {"client_threads", loops},
           {"client_sched_batch", o.sched_batch},
           {"mode", o.rate > 0 ? "fixed_rate" : "closed_loop"},
           {"target_rate", o.rate},
           {"seconds", o.seconds},
           {"requests", all.size()},
           {"ok", ok},
           {"throughput", rate},
           {"ok_throughput", static_cast<double>(ok) / o.seconds},
           {"p50_us", pct_us(all, 0.50)},
           {"p90_us", pct_us(all, 0.90)},
           {"p99_us", pct_us(all, 0.99)},
           {"p999_us", pct_us(all, 0.999)},
           {"max_us", all.empty() ? 0.0 : static_cast<double>(*std::max_element(all.begin(), all.end())) / 1000.0},
           {"from_send_p50_us", pct_us(from_send, 0.50)},
           {"from_send_p99_us", pct_us(from_send, 0.99)},
           {"from_send_p999_us", pct_us(from_send, 0.999)},
           {"client_late_p50_us", pct_us(client_late, 0.50)},
           {"client_late_p99_us", pct_us(client_late, 0.99)},
           {"client_late_p999_us", pct_us(client_late, 0.999)},
           {"behind_answer", behind_answer},
           {"outcomes", total},
           {"reconnects", reconnect_total},
           {"sent_including_warmup", sent_total}};
    std::printf("  %-11s conns %3d  %9.0f req/s%s  p50 %8.0f us  p99 %8.0f us  p99.9 %8.0f us  ok %llu/%zu\n",
                o.rate > 0 ? "fixed-rate" : "closed-loop", c, rate,
                o.rate > 0 ? (" (target " + std::to_string(static_cast<long>(o.rate)) + ")").c_str() : "",
                j["p50_us"].get<double>(), j["p99_us"].get<double>(), j["p999_us"].get<double>(),
                static_cast<unsigned long long>(ok), all.size());
    std::fflush(stdout);
    if (!o.json_path.empty()) {
        std::ofstream out(o.json_path);
        out << j.dump(2) << "\n";
        if (!out) throw std::runtime_error("cannot write " + o.json_path);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "load_gen: %s\n", e.what());
        return 1;
    }
}
