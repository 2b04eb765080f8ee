#pragma once
// The rotation engine: starts rotations, moves each one through its
// persisted state machine as time allows, rolls back, and reports.
//
//   planned -> generated -> published -> [phasing ->] promoted -> done
//                 \______________ failed / rolled_back ______________/
//
// planned    the new kid is chosen and recorded before anything is made, so
//            a crash can always find (and remove) what it left in the token
// generated  the new version exists (pre_active, not primary) in token + store
// published  visible to verifiers and JWKS; BLUE_GREEN checks have passed
// phasing    GRADUAL only: the new version signs a growing share of callers
// promoted   the new version is primary; the old one still verifies
// done       the old version is deactivated (after overlap, rollback window
//            or last phase, and after quiet_time without use if configured)
//
// Every step is idempotent and re-checks the key's real state, so advance()
// after a crash at any point resumes (or, before promotion, rolls back)
// without leaving a key without a primary, a token object without a record,
// or a record without key material. Two engines on one store never work on
// the same key at once: each holds a lease ("rotation:<key id>") while it does.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/key_service.hpp"
#include "core/rotation/policy.hpp"
#include "core/tokens/token_service.hpp"

namespace kw::core::rotation {

struct Params {
    Strategy strategy = Strategy::overlapping;
    std::int64_t overlap = 86400;
    std::vector<Phase> phases{{10, 3600}, {50, 3600}, {100, 3600}};
    std::int64_t rollback_window = 86400;
    std::int64_t jwks_lead = 0;
    int keep_versions = 3;
    std::int64_t quiet_time = 0;

    [[nodiscard]] static Params from_policy(const Policy* policy);
    [[nodiscard]] std::string to_json() const;
    [[nodiscard]] static Params from_json(const std::string& text);
};

struct StartResult {
    RotationRecord record;
    std::optional<std::string> new_token;  // api_token keys: the successor, shown once
};

struct StrategyStats {
    std::string strategy;
    int total = 0;
    int succeeded = 0;
    int failed = 0;
    int rolled_back = 0;
    int in_progress = 0;
    double success_rate = 0;  // succeeded / finished
    double mean_seconds = 0;  // finished rotations, start to end
    double p95_seconds = 0;
};

struct EngineOptions {
    std::string owner;  // lease owner id, e.g. "host:pid"
    std::int64_t lease_ttl = 300;
};

class Engine {
public:
    Engine(KeyService& keys, tokens::TokenService& tokens, const PolicySet& policies, EngineOptions options);

    /// Starts a rotation of `name` and advances it as far as time allows.
    StartResult rotate(std::string_view name, std::optional<Strategy> strategy = {});
    /// Scheduler tick: advances every open rotation, then starts the due ones.
    /// Keys held by another engine's lease are skipped.
    std::vector<RotationRecord> run_due();
    /// Returns signing to the old version (while it is still active).
    RotationRecord rollback(std::string_view name);

    /// The key's open rotation, else its latest one.
    [[nodiscard]] std::optional<RotationRecord> status(std::string_view name);
    [[nodiscard]] std::vector<RotationRecord> history(std::string_view name, std::size_t limit = 100);
    [[nodiscard]] std::vector<StrategyStats> stats();  // per strategy plus "ALL" last
    /// When the key is next due (nullopt: no policy or not rotatable).
    [[nodiscard]] std::optional<UnixTime> next_due(const ManagedKey& key) const;

    /// Moves one rotation forward as far as time allows (persisting each step).
    RotationRecord advance(RotationRecord r, std::optional<std::string>* new_token = nullptr);

private:
    void promote(const ManagedKey& key, RotationRecord& r);
    void retire(const ManagedKey& key, RotationRecord& r, const Params& p);
    void fail(RotationRecord& r, const std::string& error);
    bool check_new_version(const ManagedKey& key, const RotationRecord& r, std::string& why);
    void save(const RotationRecord& r);

    KeyService& keys_;
    tokens::TokenService& tokens_;
    const PolicySet& policies_;
    EngineOptions options_;
};

/// Fault injection for crash tests: kills the process with SIGKILL when the
/// environment variable KW_CRASH_AT equals `step`. A no-op otherwise.
void crash_point(const char* step);

}  // namespace kw::core::rotation
