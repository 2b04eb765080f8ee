#pragma once
// Rotation policies: which keys they match and how those keys rotate.
//
// Policies live in TOML files (examples in policies/). A file is parsed and
// checked as a whole: any mistake (unknown field, wrong type, overlap longer
// than the cryptoperiod, a phase share outside 0..100, two policies that
// claim one key with equal priority) rejects the whole file with
// "FILE:LINE: reason", and whatever policies were running stay as they were.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/key.hpp"

namespace kw::core::rotation {

enum class Strategy { immediate, gradual, overlapping, blue_green };
[[nodiscard]] std::string_view to_string(Strategy s);  // "IMMEDIATE", "GRADUAL", "OVERLAPPING", "BLUE_GREEN"
[[nodiscard]] std::optional<Strategy> parse_strategy(std::string_view s);  // case-insensitive

struct Phase {
    int share = 100;            // percent of signing traffic on the new version, 0..100
    std::int64_t duration = 0;  // seconds this phase lasts
};

struct Match {
    std::optional<std::string> name_glob;  // fnmatch pattern on the key name
    std::optional<KeyType> type;
    std::map<std::string, std::string> labels;  // all must be present and equal
};

struct Policy {
    std::string name;
    std::string source;  // file it came from
    int line = 0;        // line of its [[policy]] header
    Match match;
    int priority = 0;               // higher wins when several policies match a key
    std::int64_t cryptoperiod = 0;  // seconds between rotations (default: NIST table by key type)
    Strategy strategy = Strategy::overlapping;
    std::int64_t overlap = 0;              // OVERLAPPING: old version verifies this long after the switch
    std::vector<Phase> phases;             // GRADUAL: in order; the last must reach share 100
    std::int64_t rollback_window = 86400;  // BLUE_GREEN: how long `rotate rollback` stays possible
    std::int64_t jwks_lead = 0;            // new version is published this long before it signs
    int keep_versions = 3;                 // non-destroyed versions to keep; older deactivated ones are destroyed
    std::optional<std::int64_t> max_uses;  // rotate early after this many uses
    std::int64_t expiry_warning = std::int64_t{14} * 86400;  // alert this long before a key expires
    std::int64_t quiet_time = 0;           // usage-aware completion: retire old only after this long unused (0 = off)
    std::vector<std::string> alert_hooks;  // webhook URLs

    [[nodiscard]] bool matches(const ManagedKey& key) const;
};

/// NIST SP 800-57 Part 1 based default cryptoperiod for a key type (seconds).
[[nodiscard]] std::int64_t default_cryptoperiod(KeyType type);

class PolicySet {
public:
    /// Parses and checks a policy file. Throws Error(config) "FILE:LINE: reason".
    static PolicySet parse(std::string_view text, const std::string& source);
    static PolicySet load_file(const std::string& path);

    /// The highest-priority policy matching `key`, or nullptr.
    [[nodiscard]] const Policy* for_key(const ManagedKey& key) const;
    /// Throws Error(config) "FILE:LINE: policies A and B both claim key K with priority P".
    void check_conflicts(const std::vector<ManagedKey>& keys) const;

    [[nodiscard]] const std::vector<Policy>& policies() const noexcept { return policies_; }
    [[nodiscard]] const Policy* find(std::string_view name) const;

private:
    std::vector<Policy> policies_;
};

}  // namespace kw::core::rotation
