// A small HTTP/1.1 load generator for keywardend's POST /v1/tokens/verify:
// keep-alive connections on loopback, one thread and one blocking socket per
// connection, latency per request, optional fixed request rate.
//
//   load_gen --port P --token-file F --connections C --seconds S
//            [--host 127.0.0.1] [--rate R] [--warmup W] [--json FILE]
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
// An answer counts as ok when it is HTTP 200 with "code":"VALID". Anything
// else is counted by status and code; a closed connection is re-opened.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <mutex>
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
    double seconds = 3;
    double rate = 0;  // 0: closed loop
    double warmup = 0.5;
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
        else if (a == "--seconds")
            o.seconds = std::stod(next());
        else if (a == "--rate")
            o.rate = std::stod(next());
        else if (a == "--warmup")
            o.warmup = std::stod(next());
        else if (a == "--json")
            o.json_path = next();
        else
            throw std::invalid_argument("unknown argument " + a);
    }
    if (o.port <= 0 || o.token_file.empty() || o.connections < 1 || o.connections > 1024 || o.seconds <= 0) {
        throw std::invalid_argument(
            "usage: load_gen --port P --token-file F --connections C --seconds S [--rate R] [--warmup W] [--json "
            "FILE]");
    }
    return o;
}

class Connection {
public:
    Connection(const std::string& host, int port) : host_(host), port_(port) { open(); }
    ~Connection() { close(); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Sends `request` and reads one answer; returns the status and leaves the
    // body in body(). Re-opens the connection once if the server closed it.
    int exchange(const std::string& request) {
        for (int attempt = 0;; ++attempt) {
            if (fd_ < 0) open();
            if (send_all(request) && read_response()) return status_;
            close();
            ++reconnects;
            if (attempt >= 1) return 0;  // connection-level failure
        }
    }
    [[nodiscard]] const std::string& body() const { return body_; }
    std::uint64_t reconnects = 0;

private:
    void open() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        timeval tv{10, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        if (::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr) != 1)
            throw std::runtime_error("bad IPv4 address " + host_);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            const int e = errno;
            close();
            throw std::runtime_error("connect " + host_ + ":" + std::to_string(port_) + ": " + std::strerror(e));
        }
        buf_.clear();
    }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    bool send_all(const std::string& s) {
        std::size_t off = 0;
        while (off < s.size()) {
            ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (n <= 0) {
                if (n < 0 && errno == EINTR) continue;
                return false;
            }
            off += static_cast<std::size_t>(n);
        }
        return true;
    }
    bool fill() {
        char tmp[16384];
        for (;;) {
            ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
            if (n > 0) {
                buf_.append(tmp, static_cast<std::size_t>(n));
                return true;
            }
            if (n < 0 && errno == EINTR) continue;
            return false;
        }
    }
    bool read_response() {
        std::size_t hdr_end;
        while ((hdr_end = buf_.find("\r\n\r\n")) == std::string::npos) {
            if (!fill()) return false;
        }
        // Status line "HTTP/1.1 200 OK".
        if (buf_.size() < 12 || buf_.compare(0, 5, "HTTP/") != 0) return false;
        status_ = std::atoi(buf_.c_str() + 9);
        std::size_t length = 0;
        bool close_after = false;
        std::size_t pos = buf_.find("\r\n") + 2;
        while (pos < hdr_end) {
            std::size_t eol = buf_.find("\r\n", pos);
            std::string line = buf_.substr(pos, eol - pos);
            std::string lower = line;
            std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
            if (lower.rfind("content-length:", 0) == 0) length = std::stoul(line.substr(15));
            if (lower.rfind("connection:", 0) == 0 && lower.find("close") != std::string::npos) close_after = true;
            pos = eol + 2;
        }
        const std::size_t total = hdr_end + 4 + length;
        while (buf_.size() < total) {
            if (!fill()) return false;
        }
        body_.assign(buf_, hdr_end + 4, length);
        buf_.erase(0, total);
        if (close_after) close();
        return true;
    }

    std::string host_;
    int port_;
    int fd_ = -1;
    std::string buf_;
    std::string body_;
    int status_ = 0;
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

int run(const Options& o) {
    const std::string token = read_token(o.token_file);
    const std::string body = "{\"token\":\"" + token + "\"}";
    std::ostringstream req;
    req << "POST /v1/tokens/verify HTTP/1.1\r\nHost: " << o.host << ":" << o.port
        << "\r\nContent-Type: application/json\r\nContent-Length: " << body.size() << "\r\n\r\n"
        << body;
    const std::string request = req.str();

    const int c = o.connections;
    std::vector<std::vector<std::int64_t>> lat(static_cast<std::size_t>(c));
    std::vector<std::map<std::string, std::uint64_t>> outcomes(static_cast<std::size_t>(c));
    std::vector<std::uint64_t> reconnects(static_cast<std::size_t>(c), 0);
    std::vector<std::uint64_t> sent(static_cast<std::size_t>(c), 0);  // warm-up included
    std::vector<std::string> errors(static_cast<std::size_t>(c));
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    SteadyClock::time_point start, measure_from, end;
    const auto dur = [](double s) {
        return std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(s));
    };

    std::vector<std::thread> ts;
    for (int i = 0; i < c; ++i) {
        ts.emplace_back([&, i] {
            const auto idx = static_cast<std::size_t>(i);
            try {
                Connection conn(o.host, o.port);
                ++ready;
                while (!go.load()) std::this_thread::yield();
                std::uint64_t k = 0;
                for (;;) {
                    SteadyClock::time_point t0;
                    if (o.rate > 0) {
                        t0 = start + dur((static_cast<double>(k) * c + i) / o.rate);
                        ++k;
                        if (t0 >= end) break;
                        std::this_thread::sleep_until(t0);
                    } else {
                        t0 = SteadyClock::now();
                        if (t0 >= end) break;
                    }
                    const int status = conn.exchange(request);
                    const auto t1 = SteadyClock::now();
                    ++sent[idx];
                    if (t0 < measure_from) continue;  // warm-up
                    lat[idx].push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
                    const bool ok = status == 200 && conn.body().find("\"code\":\"VALID\"") != std::string::npos;
                    ++outcomes[idx][ok ? "ok" : outcome_of(status, conn.body())];
                }
                reconnects[idx] = conn.reconnects;
            } catch (const std::exception& e) {
                errors[idx] = e.what();
                ++ready;
            }
        });
    }
    while (ready.load() < c) std::this_thread::yield();
    start = SteadyClock::now();
    measure_from = start + dur(o.warmup);
    end = measure_from + dur(o.seconds);
    go = true;
    for (auto& t : ts) t.join();
    for (const auto& e : errors) {
        if (!e.empty()) throw std::runtime_error(e);
    }

    std::vector<std::int64_t> all;
    std::map<std::string, std::uint64_t> total;
    std::uint64_t reconnect_total = 0, sent_total = 0;
    for (int i = 0; i < c; ++i) {
        const auto idx = static_cast<std::size_t>(i);
        sent_total += sent[idx];
        all.insert(all.end(), lat[idx].begin(), lat[idx].end());
        for (const auto& [k, v] : outcomes[idx]) total[k] += v;
        reconnect_total += reconnects[idx];
    }
    // Requests whose intended start lies in the window; in closed loop the
    // last ones finish a little after it, which the divisor ignores (<0.1%).
    const double rate = static_cast<double>(all.size()) / o.seconds;
    const std::uint64_t ok = total.count("ok") ? total["ok"] : 0;
    json j{{"connections", c},
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
