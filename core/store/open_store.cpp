#include <filesystem>

#include "core/error.hpp"
#include "core/store/sqlite/sqlite_store.hpp"
#include "core/store/store.hpp"

namespace kw::core {

std::unique_ptr<Store> open_store(const std::string& url, const StoreOptions& options) {
    std::string path = url;
    for (const char* prefix : {"sqlite://", "sqlite:"}) {
        if (url.rfind(prefix, 0) == 0) {
            path = url.substr(std::char_traits<char>::length(prefix));
            break;
        }
    }
    if (url.rfind("postgres", 0) == 0) {
        throw Error(ErrorKind::config, "PostgreSQL store is not built yet; use sqlite:PATH");
    }
    if (path.empty()) throw Error(ErrorKind::config, "empty store path in '" + url + "'");
    auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty() && !std::filesystem::exists(parent)) {
        throw Error(ErrorKind::store_failure, "store directory " + parent.string() + " does not exist");
    }
    return std::make_unique<sqlite::SqliteStore>(path, options);
}

}  // namespace kw::core
