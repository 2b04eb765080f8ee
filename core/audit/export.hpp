#pragma once
// The portable form of the audit log (format keywarden-audit-export-v1),
// checked without the HSM by `hsm-keytool audit verify --offline`.
//
// JSON Lines: a header {"record":"header", "format", "exported_at", "token",
// "public_key" (PEM of the checkpoint signing key)}, then every event in
// sequence order ({"record":"event", ...}), each checkpoint right after the
// event it covers ({"record":"checkpoint", ...}).
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "core/audit/sink.hpp"
#include "core/types.hpp"

namespace kw::core::audit {

struct ExportCounts {
    std::uint64_t events = 0;
    std::uint64_t checkpoints = 0;
};

/// Writes the whole log in `sink` as an export, one line (with its newline)
/// per call of `emit`. The caller should take a checkpoint first, so the
/// export ends on a signed one.
ExportCounts write_export(Sink& sink, const std::string& public_key_pem, std::string_view token_label, UnixTime now,
                          const std::function<void(const std::string&)>& emit);

}  // namespace kw::core::audit
