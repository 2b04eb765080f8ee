#pragma once
// Statements prepared once per connection and reused (reset + rebind) on hot
// paths (token lookup, use counting, audit appends): preparing costs more than
// running these short statements.
//
// Not thread-safe: the owner serialises access (SqliteStore holds its mutex,
// the audit sink by one Log leader at a time).
#include <memory>
#include <string>
#include <unordered_map>

#include "core/store/sqlite/database.hpp"

namespace kw::core::sqlite {

class StatementCache {
public:
    explicit StatementCache(const Database& db) : db_(db) {}

    /// A prepared statement, reset when the lease ends: a SELECT left
    /// un-reset would keep its read snapshot (and block WAL checkpoints).
    class Lease {
    public:
        explicit Lease(Statement& s) : s_(s) {}
        ~Lease() { s_.reset(); }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        [[nodiscard]] Statement& operator*() const noexcept { return s_; }
        [[nodiscard]] Statement* operator->() const noexcept { return &s_; }

    private:
        Statement& s_;
    };

    /// The statement for `sql`, prepared on first use.
    [[nodiscard]] Lease get(const std::string& sql);

private:
    const Database& db_;
    std::unordered_map<std::string, std::unique_ptr<Statement>> statements_;
};

}  // namespace kw::core::sqlite
