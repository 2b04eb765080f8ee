#include "server/socket_access.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace kw::server {

gid_t resolve_group(const std::string& name, std::string_view setting) {
    if (name.empty()) throw std::runtime_error(std::string(setting) + " is empty");
    unsigned long number = 0;
    const auto* end = name.data() + name.size();
    if (auto [p, ec] = std::from_chars(name.data(), end, number); ec == std::errc() && p == end) {
        return static_cast<gid_t>(number);
    }
    std::vector<char> buffer(4096);
    for (;;) {
        group grp{};
        group* found = nullptr;
        const int rc = ::getgrnam_r(name.c_str(), &grp, buffer.data(), buffer.size(), &found);
        if (rc == ERANGE && buffer.size() < (std::size_t{1} << 20)) {
            buffer.resize(buffer.size() * 2);
            continue;
        }
        if (rc != 0) {
            throw std::runtime_error(std::string(setting) + ": looking up group '" + name + "': " + std::strerror(rc));
        }
        if (found == nullptr) throw std::runtime_error(std::string(setting) + ": no group named '" + name + "'");
        return found->gr_gid;
    }
}

void share_socket_with_group(const std::string& path, gid_t gid) {
    auto fail = [&](const char* what) {
        const int e = errno;
        std::error_code ignored;
        std::filesystem::remove(path, ignored);  // never left behind half shared
        throw std::runtime_error(std::string(what) + " " + path + " to group " + std::to_string(gid) + ": " +
                                 std::strerror(e) +
                                 (e == EPERM ? " (keywardend's user must be root or a member of the group)" : ""));
    };
    if (::fchownat(AT_FDCWD, path.c_str(), static_cast<uid_t>(-1), gid, AT_SYMLINK_NOFOLLOW) != 0) fail("chgrp");
    if (::fchmodat(AT_FDCWD, path.c_str(), 0660, AT_SYMLINK_NOFOLLOW) != 0) fail("chmod 0660");
}

}  // namespace kw::server
