#include "server/alert_hooks.hpp"

namespace kw::server {

std::set<std::string> alert_kinds(const core::Config& config) {
    return {config.alert_kinds.begin(), config.alert_kinds.end()};
}

std::vector<core::alerts::Target> global_targets(const core::Config& config) {
    std::vector<core::alerts::Target> out;
    for (const auto& url : config.alert_webhooks) out.push_back({url, alert_kinds(config)});
    return out;
}

std::vector<core::alerts::Target> policy_targets(const core::rotation::Policy* policy, const core::Config& config) {
    std::vector<core::alerts::Target> out;
    if (policy == nullptr) return out;
    for (const auto& url : policy->alert_hooks) out.push_back({url, alert_kinds(config)});
    return out;
}

const core::rotation::Policy* rotation_policy(const core::rotation::PolicySet& policies, core::KeyService& keys,
                                              const core::RotationRecord& rotation) {
    if (!rotation.policy.empty()) {
        if (const auto* p = policies.find(rotation.policy)) return p;
    }
    try {
        return policies.for_key(keys.get(rotation.key_name));
    } catch (const std::exception&) {
        return nullptr;  // the key is gone: the global webhooks still hear of it
    }
}

}  // namespace kw::server
