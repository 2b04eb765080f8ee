#include "core/audit/export.hpp"

#include <nlohmann/json.hpp>

#include "core/audit/event.hpp"
#include "core/clock.hpp"

namespace kw::core::audit {

ExportCounts write_export(Sink& sink, const std::string& public_key_pem, std::string_view token_label, UnixTime now,
                          const std::function<void(const std::string&)>& emit) {
    ExportCounts n;
    emit(nlohmann::json{{"record", "header"},
                        {"format", "keywarden-audit-export-v1"},
                        {"exported_at", format_time(now)},
                        {"token", token_label},
                        {"public_key", public_key_pem}}
             .dump() +
         "\n");
    const auto checkpoints = sink.checkpoints();
    std::size_t next_cp = 0;
    sink.for_each([&](const Event& e) {
        auto j = to_json(e);
        j["record"] = "event";
        emit(j.dump() + "\n");
        ++n.events;
        while (next_cp < checkpoints.size() && checkpoints[next_cp].seq <= e.seq) {
            auto c = to_json(checkpoints[next_cp++]);
            c["record"] = "checkpoint";
            emit(c.dump() + "\n");
            ++n.checkpoints;
        }
        return true;
    });
    return n;
}

}  // namespace kw::core::audit
