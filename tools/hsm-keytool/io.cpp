#include "tools/hsm-keytool/io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>

#include "core/error.hpp"

namespace kw::keytool {

std::vector<std::string> split_scopes(const std::vector<std::string>& raw) {
    std::vector<std::string> out;
    for (const auto& item : raw) {
        std::size_t start = 0;
        while (start <= item.size()) {
            std::size_t comma = item.find(',', start);
            std::string part = item.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            if (!part.empty()) out.push_back(part);
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    }
    return out;
}

std::vector<std::uint8_t> read_input(const std::optional<std::string>& path) {
    if (!path || path->empty() || *path == "-") {
        std::cin >> std::noskipws;
        return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    std::ifstream in(*path, std::ios::binary);
    if (!in) throw core::Error(core::ErrorKind::invalid_argument, "cannot read " + *path + ": " + std::strerror(errno));
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_output(const std::optional<std::string>& path, const std::vector<std::uint8_t>& data) {
    if (!path || path->empty() || *path == "-") {
        std::cout.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
        std::cout.flush();
        return;
    }
    int fd = ::open(path->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        throw core::Error(core::ErrorKind::invalid_argument, "cannot write " + *path + ": " + std::strerror(errno));
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            int e = errno;
            ::close(fd);
            throw core::Error(core::ErrorKind::invalid_argument, "cannot write " + *path + ": " + std::strerror(e));
        }
        done += static_cast<std::size_t>(n);
    }
    if (::close(fd) != 0)
        throw core::Error(core::ErrorKind::invalid_argument, "cannot write " + *path + ": " + std::strerror(errno));
}

std::string algorithm_text(const core::ManagedKey& key) {
    switch (key.type) {
        case core::KeyType::hmac:
            return key.rsa_bits != 0 ? "HMAC (" + std::to_string(key.rsa_bits) + "-bit secret)" : "HMAC-SHA256";
        case core::KeyType::rsa: return "RSA-" + std::to_string(key.rsa_bits);
        case core::KeyType::ecdsa:
            return "ECDSA " + std::string(core::to_string(key.curve.value_or(core::Curve::p256)));
        case core::KeyType::ed25519: return "Ed25519";
        case core::KeyType::jwt:
            return "JWT " + std::string(core::to_string(key.jwt_alg.value_or(core::JwtAlg::ES256)));
        default: return std::string(core::to_string(key.type));
    }
}

std::string key_status(const core::ManagedKey& key, core::UnixTime now) {
    if (key.revoked_at) return "revoked";
    if (key.expired(now)) return "expired";
    const auto* p = key.primary();
    return p != nullptr ? std::string(core::to_string(p->state)) : "no-primary";
}

nlohmann::json key_json(const core::ManagedKey& key) {
    nlohmann::json j;
    j["id"] = key.id;
    j["name"] = key.name;
    j["type"] = core::to_string(key.type);
    j["algorithm"] = algorithm_text(key);
    if (key.rsa_bits != 0) j[key.type == core::KeyType::hmac ? "hmac_bits" : "rsa_bits"] = key.rsa_bits;
    if (key.curve) j["curve"] = core::to_string(*key.curve);
    if (key.jwt_alg) j["jwt_alg"] = core::to_string(*key.jwt_alg);
    j["scopes"] = key.scopes;
    j["owner"] = key.owner;
    j["labels"] = key.labels;
    j["created_at"] = core::format_time(key.created_at);
    j["expires_at"] = key.expires_at ? nlohmann::json(core::format_time(*key.expires_at)) : nlohmann::json(nullptr);
    j["revoked_at"] = key.revoked_at ? nlohmann::json(core::format_time(*key.revoked_at)) : nlohmann::json(nullptr);
    nlohmann::json versions = nlohmann::json::array();
    for (const auto& v : key.versions) {
        versions.push_back({{"version", v.version},
                            {"kid", v.kid},
                            {"state", core::to_string(v.state)},
                            {"primary", v.primary},
                            {"residency", core::to_string(v.residency)},
                            {"created_at", core::format_time(v.created_at)},
                            {"state_changed_at", core::format_time(v.state_changed_at)}});
    }
    j["versions"] = versions;
    return j;
}

}  // namespace kw::keytool
