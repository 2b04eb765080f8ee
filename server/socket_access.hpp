#pragma once
// Who may connect to keywardend's unix sockets.
//
// connect(2) on a unix socket needs write permission on the socket file, so
// the file's owner, group and mode are the access control. Both sockets are
// created 0600 (only the daemon's user); a configured group widens that to
// 0660 for that group's members, e.g. the services that load the PKCS#11
// module or call the HTTP API over the socket. The directory holding the
// socket must let them reach it (search permission) as well.
#include <sys/types.h>

#include <string>
#include <string_view>

namespace kw::server {

/// The gid of the group `name`, given by name or as a number. Throws std::runtime_error
/// naming `setting` when no group has that name.
[[nodiscard]] gid_t resolve_group(const std::string& name, std::string_view setting);

/// Makes the freshly bound socket file at `path` group-owned by `gid` with
/// mode 0660. Call it between bind and listen, so no one can connect while
/// the file is on its way from 0600 to 0660. Symbolic links are not
/// followed. Throws std::runtime_error with the system's reason when that is
/// not allowed (the daemon's user must be root or a member of the group),
/// after removing the socket file.
void share_socket_with_group(const std::string& path, gid_t gid);

}  // namespace kw::server
