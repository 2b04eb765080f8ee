#include "core/rotation/policy.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#define TOML_EXCEPTIONS 1
#include <toml++/toml.h>

#include "core/clock.hpp"
#include "core/error.hpp"

namespace kw::core::rotation {

// ---------------------------------------------------------------- strategies

namespace {

constexpr std::array<std::pair<Strategy, std::string_view>, 4> kStrategies{{
    {Strategy::immediate, "IMMEDIATE"},
    {Strategy::gradual, "GRADUAL"},
    {Strategy::overlapping, "OVERLAPPING"},
    {Strategy::blue_green, "BLUE_GREEN"},
}};

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto x = static_cast<unsigned char>(a[i]);
        const auto y = static_cast<unsigned char>(b[i]);
        if (std::toupper(x) != std::toupper(y)) return false;
    }
    return true;
}

}  // namespace

std::string_view to_string(Strategy s) {
    for (const auto& [v, name] : kStrategies) {
        if (v == s) return name;
    }
    return "UNKNOWN";
}

std::optional<Strategy> parse_strategy(std::string_view s) {
    for (const auto& [v, name] : kStrategies) {
        if (iequals(s, name)) return v;
    }
    return std::nullopt;
}

// ------------------------------------------------------------- NIST defaults

// NIST SP 800-57 Part 1 Rev. 5, section 5.3.6 and its Table 1 ("Suggested
// cryptoperiods for key types"). The table gives upper bounds; keywarden's
// keys are online, high-volume and reachable over the network (the risk
// factors of section 5.3.1), so the defaults sit at the short end of each
// range. policies/README.md explains each choice.
std::int64_t default_cryptoperiod(KeyType type) {
    constexpr std::int64_t day = 86400;
    switch (type) {
        // Symmetric authentication key (OUP <= 2 years): 1 year.
        case KeyType::hmac:
        // Private signature keys (1-3 years): 1 year, the short end.
        case KeyType::rsa:
        case KeyType::ecdsa:
        case KeyType::ed25519: return 365 * day;
        // JWT signing keys (private signature key or, for HS256, symmetric
        // authentication key): 90 days, JWKS makes rotation cheap.
        case KeyType::jwt:
        // API tokens: bearer secrets, closest to a symmetric authorization key
        // (<= 2 years): 90 days.
        case KeyType::api_token: return 90 * day;
        // Provisioning tokens: single-use bootstrap secrets, closest to an
        // ephemeral key (one transaction): 1 hour, the TokenService default expiry.
        case KeyType::provisioning: return 3600;
    }
    return 365 * day;
}

// ------------------------------------------------------------------ matching

bool Policy::matches(const ManagedKey& key) const {
    if (match.type && *match.type != key.type) return false;
    if (match.name_glob && fnmatch(match.name_glob->c_str(), key.name.c_str(), 0) != 0) return false;
    for (const auto& [k, v] : match.labels) {
        auto it = key.labels.find(k);
        if (it == key.labels.end() || it->second != v) return false;
    }
    return true;
}

const Policy* PolicySet::for_key(const ManagedKey& key) const {
    const Policy* best = nullptr;
    for (const auto& p : policies_) {
        // Strictly greater: among equal priorities the first in the file wins
        // (parse and check_conflicts reject such ties where they matter).
        if (p.matches(key) && (best == nullptr || p.priority > best->priority)) best = &p;
    }
    return best;
}

const Policy* PolicySet::find(std::string_view name) const {
    for (const auto& p : policies_) {
        if (p.name == name) return &p;
    }
    return nullptr;
}

void PolicySet::check_conflicts(const std::vector<ManagedKey>& keys) const {
    for (const auto& key : keys) {
        const Policy* winner = for_key(key);
        if (winner == nullptr) continue;
        for (const auto& p : policies_) {
            if (&p == winner || p.priority != winner->priority || !p.matches(key)) continue;
            // p comes after winner in the file (winner is the first at its priority).
            throw Error(ErrorKind::config, p.source + ":" + std::to_string(p.line) + ": policies " + winner->name +
                                               " and " + p.name + " both claim key " + key.name + " with priority " +
                                               std::to_string(p.priority));
        }
    }
}

// ------------------------------------------------------------------- parsing

namespace {

std::string quoted(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

std::string join(const std::set<std::string>& names) {
    std::string out;
    for (const auto& n : names) {
        if (!out.empty()) out += ", ";
        out += n;
    }
    return out;
}

int line_of(const toml::node& n) {
    return static_cast<int>(n.source().begin.line);
}

class Parser {
public:
    explicit Parser(const std::string& source) : src_(source) {}

    [[noreturn]] void fail(int line, const std::string& what) const {
        throw Error(ErrorKind::config, src_ + ":" + std::to_string(line) + ": " + what);
    }
    [[noreturn]] void fail(const toml::node& n, const std::string& what) const { fail(line_of(n), what); }

    void reject_unknown(const toml::table& t, const std::string& section, const std::set<std::string>& known) const {
        // Tables iterate in key order, not file order: report the first
        // unknown field in the file.
        bool found = false;
        int first_line = 0;
        std::string first;
        for (const auto& [k, v] : t) {
            if (known.contains(std::string(k.str()))) continue;
            int line = static_cast<int>(k.source().begin.line);
            if (line == 0) line = line_of(v);
            if (!found || line < first_line) {
                found = true;
                first_line = line;
                first = std::string(k.str());
            }
        }
        if (found) {
            fail(first_line, "unknown field '" + section + first + "' (expected one of: " + join(known) + ")");
        }
    }

    const toml::table* sub_table(const toml::table& t, const char* key, const std::string& path) const {
        const toml::node* n = t.get(key);
        if (n == nullptr) return nullptr;
        if (!n->is_table()) fail(*n, path + " must be a table");
        return n->as_table();
    }

    std::optional<std::string> string(const toml::table& t, const char* key, const std::string& path) const {
        const toml::node* n = t.get(key);
        if (n == nullptr) return std::nullopt;
        if (!n->is_string()) fail(*n, path + " must be a string");
        return n->as_string()->get();
    }

    std::optional<std::int64_t> integer(const toml::table& t, const char* key, const std::string& path) const {
        const toml::node* n = t.get(key);
        if (n == nullptr) return std::nullopt;
        if (!n->is_integer()) fail(*n, path + " must be an integer");
        return n->as_integer()->get();
    }

    std::optional<std::int64_t> duration(const toml::table& t, const char* key, const std::string& path) const {
        const toml::node* n = t.get(key);
        if (n == nullptr) return std::nullopt;
        if (n->is_integer()) {
            std::int64_t v = n->as_integer()->get();
            if (v < 0) fail(*n, path + " " + std::to_string(v) + " is negative: durations are zero or more seconds");
            return v;
        }
        if (n->is_string()) {
            const std::string& text = n->as_string()->get();
            auto v = parse_duration(text);
            if (!v) {
                fail(*n, path + " " + quoted(text) +
                             " is not a duration: use a whole number with an optional unit s, m, h, d or w "
                             "(\"90d\", \"12h\") or an integer number of seconds");
            }
            return *v;
        }
        fail(*n, path + " must be a duration: a string like \"90d\" or an integer number of seconds");
    }

    Policy policy(const toml::node& node, const std::vector<Policy>& earlier) const;
    void phases(const toml::table& gradual, Policy& p) const;

private:
    const std::string& src_;
};

Policy Parser::policy(const toml::node& node, const std::vector<Policy>& earlier) const {
    if (!node.is_table()) fail(node, "each policy must be a table: write it as [[policy]]");
    const toml::table& t = *node.as_table();
    Policy p;
    p.source = src_;
    p.line = line_of(t);

    reject_unknown(t, "policy.",
                   {"name", "priority", "cryptoperiod", "strategy", "overlap", "jwks_lead", "keep_versions", "max_uses",
                    "expiry_warning", "quiet_time", "alert_hooks", "match", "gradual", "blue_green"});

    // name: required, non-empty, unique in the file.
    const toml::node* name_node = t.get("name");
    if (name_node == nullptr) fail(p.line, "policy has no name: every [[policy]] needs name = \"...\"");
    p.name = *string(t, "name", "name");
    if (p.name.empty()) fail(*name_node, "name must not be empty");
    for (const auto& e : earlier) {
        if (e.name == p.name) {
            fail(*name_node,
                 "duplicate policy name '" + p.name + "' (first defined at line " + std::to_string(e.line) + ")");
        }
    }

    // [policy.match]
    if (const toml::table* m = sub_table(t, "match", "policy.match")) {
        reject_unknown(*m, "policy.match.", {"name", "type", "labels"});
        if (auto glob = string(*m, "name", "match.name")) {
            if (glob->empty()) fail(*m->get("name"), "match.name must not be empty (leave it out to match every name)");
            p.match.name_glob = std::move(glob);
        }
        if (auto type = string(*m, "type", "match.type")) {
            p.match.type = parse_key_type(*type);
            if (!p.match.type) {
                fail(*m->get("type"), "unknown key type " + quoted(*type) +
                                          ": expected hmac, rsa, ecdsa, ed25519, jwt, api_token or provisioning");
            }
        }
        if (const toml::table* labels = sub_table(*m, "labels", "match.labels")) {
            for (const auto& [k, v] : *labels) {
                if (!v.is_string()) fail(v, "match.labels." + std::string(k.str()) + " must be a string");
                p.match.labels.emplace(std::string(k.str()), v.as_string()->get());
            }
        }
    }

    if (auto prio = integer(t, "priority", "priority")) {
        if (*prio < std::numeric_limits<int>::min() || *prio > std::numeric_limits<int>::max()) {
            fail(*t.get("priority"), "priority " + std::to_string(*prio) + " is out of range");
        }
        p.priority = static_cast<int>(*prio);
    }

    if (auto s = string(t, "strategy", "strategy")) {
        auto strategy = parse_strategy(*s);
        if (!strategy) {
            fail(*t.get("strategy"),
                 "unknown strategy " + quoted(*s) + ": expected IMMEDIATE, GRADUAL, OVERLAPPING or BLUE_GREEN");
        }
        p.strategy = *strategy;
    }

    if (auto c = duration(t, "cryptoperiod", "cryptoperiod")) {
        if (*c == 0) fail(*t.get("cryptoperiod"), "cryptoperiod must be longer than zero");
        p.cryptoperiod = *c;
    } else if (p.match.type) {
        p.cryptoperiod = default_cryptoperiod(*p.match.type);
    } else {
        fail(p.line,
             "policy '" + p.name +
                 "' needs a cryptoperiod: set cryptoperiod, or match.type to use the NIST default for that type");
    }
    const std::string period = format_duration(p.cryptoperiod);

    // overlap: OVERLAPPING only. The other strategies have their own notion
    // of how long the old version keeps verifying.
    if (const toml::node* n = t.get("overlap")) {
        if (p.strategy != Strategy::overlapping) {
            std::string hint;
            switch (p.strategy) {
                case Strategy::immediate: hint = "IMMEDIATE retires the old version at the switch"; break;
                case Strategy::gradual:
                    hint = "the last phase's duration is how long the old version keeps verifying";
                    break;
                case Strategy::blue_green: hint = "use [policy.blue_green] rollback_window"; break;
                case Strategy::overlapping: break;
            }
            fail(*n, "overlap applies only to strategy OVERLAPPING (this policy is " +
                         std::string(to_string(p.strategy)) + "; " + hint + ")");
        }
        const std::int64_t v = *duration(t, "overlap", "overlap");
        if (v > p.cryptoperiod) {
            fail(*n, "overlap " + format_duration(v) + " is longer than the cryptoperiod " + period);
        }
        p.overlap = v;
    }
    if (auto v = duration(t, "jwks_lead", "jwks_lead")) {
        if (*v > p.cryptoperiod) {
            fail(*t.get("jwks_lead"),
                 "jwks_lead " + format_duration(*v) + " is longer than the cryptoperiod " + period);
        }
        p.jwks_lead = *v;
    }
    if (auto v = integer(t, "keep_versions", "keep_versions")) {
        if (*v < 1) {
            fail(*t.get("keep_versions"), "keep_versions must be at least 1 (it is " + std::to_string(*v) + ")");
        }
        if (*v > std::numeric_limits<int>::max()) {
            fail(*t.get("keep_versions"), "keep_versions " + std::to_string(*v) + " is out of range");
        }
        p.keep_versions = static_cast<int>(*v);
    }
    if (auto v = integer(t, "max_uses", "max_uses")) {
        if (*v < 1) fail(*t.get("max_uses"), "max_uses must be at least 1 (it is " + std::to_string(*v) + ")");
        p.max_uses = *v;
    }
    if (auto v = duration(t, "expiry_warning", "expiry_warning")) p.expiry_warning = *v;
    if (const toml::node* n = t.get("quiet_time")) {
        if (p.strategy == Strategy::immediate) {
            fail(*n, "quiet_time does not apply to strategy IMMEDIATE, which retires the old version at the switch");
        }
        p.quiet_time = *duration(t, "quiet_time", "quiet_time");
    }

    if (const toml::node* hooks = t.get("alert_hooks")) {
        if (!hooks->is_array()) fail(*hooks, "alert_hooks must be an array of URL strings");
        for (const toml::node& h : *hooks->as_array()) {
            if (!h.is_string()) fail(h, "alert_hooks entries must be strings");
            const std::string& url = h.as_string()->get();
            bool http = url.starts_with("http://") && url.size() > 7;
            bool https = url.starts_with("https://") && url.size() > 8;
            if (!http && !https) fail(h, "alert hook " + quoted(url) + " must be an http:// or https:// URL");
            p.alert_hooks.push_back(url);
        }
    }

    // [policy.gradual]: only for GRADUAL, and GRADUAL needs it.
    const toml::table* gradual = sub_table(t, "gradual", "policy.gradual");
    if (gradual != nullptr) {
        reject_unknown(*gradual, "policy.gradual.", {"phases"});
        if (p.strategy != Strategy::gradual) {
            const toml::node* at = gradual->get("phases");
            fail(at != nullptr ? *at : *gradual,
                 std::string(at != nullptr ? "phases apply" : "[policy.gradual] applies") +
                     " only to strategy GRADUAL (this policy is " + std::string(to_string(p.strategy)) + ")");
        }
        phases(*gradual, p);
    } else if (p.strategy == Strategy::gradual) {
        const toml::node* at = t.get("strategy");
        fail(at != nullptr ? line_of(*at) : p.line,
             "strategy GRADUAL needs phases: add [policy.gradual] phases = [{share = 10, duration = \"1h\"}, ...]");
    }

    // [policy.blue_green]: only for BLUE_GREEN.
    if (const toml::table* bg = sub_table(t, "blue_green", "policy.blue_green")) {
        reject_unknown(*bg, "policy.blue_green.", {"rollback_window"});
        if (p.strategy != Strategy::blue_green) {
            const toml::node* at = bg->get("rollback_window");
            fail(at != nullptr ? *at : *bg, std::string(at != nullptr ? "rollback_window" : "[policy.blue_green]") +
                                                " applies only to strategy BLUE_GREEN (this policy is " +
                                                std::string(to_string(p.strategy)) + ")");
        }
        if (auto v = duration(*bg, "rollback_window", "rollback_window")) {
            if (*v > p.cryptoperiod) {
                fail(*bg->get("rollback_window"),
                     "rollback_window " + format_duration(*v) + " is longer than the cryptoperiod " + period);
            }
            p.rollback_window = *v;
        }
    }

    // Two policies that match exactly the same keys at the same priority
    // conflict for every key they match, whatever keys exist.
    for (const auto& e : earlier) {
        if (e.priority == p.priority && e.match.name_glob == p.match.name_glob && e.match.type == p.match.type &&
            e.match.labels == p.match.labels) {
            fail(p.line, "policies " + e.name + " (line " + std::to_string(e.line) + ") and " + p.name +
                             " have the same match and the same priority " + std::to_string(p.priority) +
                             ": both would claim every key they match; change the priority of one");
        }
    }
    return p;
}

void Parser::phases(const toml::table& gradual, Policy& p) const {
    const toml::node* n = gradual.get("phases");
    if (n == nullptr) {
        fail(gradual, "strategy GRADUAL needs phases = [{share = 10, duration = \"1h\"}, ...] in [policy.gradual]");
    }
    if (!n->is_array()) fail(*n, "phases must be an array of {share = ..., duration = ...} tables");
    const toml::array& arr = *n->as_array();
    if (arr.empty()) fail(*n, "phases must not be empty: the last phase must reach share 100");
    std::int64_t total = 0;
    const toml::node* last_share = nullptr;
    for (const toml::node& e : arr) {
        if (!e.is_table()) fail(e, "each phase must be a table like {share = 10, duration = \"1h\"}");
        const toml::table& pt = *e.as_table();
        reject_unknown(pt, "policy.gradual.phases.", {"share", "duration"});
        const toml::node* share_node = pt.get("share");
        if (share_node == nullptr) fail(pt, "phase has no share: write {share = 10, duration = \"1h\"}");
        std::int64_t share = *integer(pt, "share", "phase share");
        if (share < 0 || share > 100) fail(*share_node, "phase share " + std::to_string(share) + " is outside 0..100");
        if (!p.phases.empty() && share < p.phases.back().share) {
            fail(*share_node, "phase share " + std::to_string(share) + " is lower than the previous phase's " +
                                  std::to_string(p.phases.back().share) + ": shares must not decrease");
        }
        if (pt.get("duration") == nullptr) fail(pt, "phase has no duration: write {share = 10, duration = \"1h\"}");
        Phase ph;
        ph.share = static_cast<int>(share);
        ph.duration = *duration(pt, "duration", "phase duration");
        total += ph.duration;  // each <= INT64_MAX; a real overflow needs absurd values, clamp below
        if (total < 0) total = std::numeric_limits<std::int64_t>::max();
        p.phases.push_back(ph);
        last_share = share_node;
    }
    if (p.phases.back().share != 100) {
        fail(*last_share, "the last phase must reach share 100 (it has " + std::to_string(p.phases.back().share) + ")");
    }
    if (total > p.cryptoperiod) {
        fail(*n, "phases last " + format_duration(total) + " in total, longer than the cryptoperiod " +
                     format_duration(p.cryptoperiod));
    }
}

}  // namespace

PolicySet PolicySet::parse(std::string_view text, const std::string& source) {
    Parser parser(source);
    toml::table root;
    try {
        root = toml::parse(text, std::string_view(source));
    } catch (const toml::parse_error& e) {
        throw Error(ErrorKind::config, source + ":" + std::to_string(e.source().begin.line) +
                                           ": TOML syntax error: " + std::string(e.description()));
    }
    parser.reject_unknown(root, "", {"policy"});
    PolicySet set;
    const toml::node* list = root.get("policy");
    if (list == nullptr) return set;  // empty file: no policies
    if (!list->is_array()) parser.fail(*list, "policy must be an array of tables: write each one as [[policy]]");
    for (const toml::node& n : *list->as_array()) {
        set.policies_.push_back(parser.policy(n, set.policies_));
    }
    return set;
}

PolicySet PolicySet::load_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorKind::config, path + ": cannot read policy file: " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw Error(ErrorKind::config, path + ": cannot read policy file: " + std::strerror(errno));
    return parse(text.str(), path);
}

}  // namespace kw::core::rotation
