#include "core/store/sqlite/statement_cache.hpp"

namespace kw::core::sqlite {

StatementCache::Lease StatementCache::get(const std::string& sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) it = statements_.emplace(sql, std::make_unique<Statement>(db_, sql.c_str())).first;
    return Lease(*it->second);
}

}  // namespace kw::core::sqlite
