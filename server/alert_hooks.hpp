#pragma once
// Per-policy alert hooks. An alert about one key (rotation_failed,
// key_expiring) goes to the global [alerts] webhooks and also to the
// alert_hooks of the rotation policy governing that key, with the same
// [alerts] kinds filter: an operator who muted a kind mutes it everywhere.
#include <set>
#include <string>
#include <vector>

#include "core/alerts/alerts.hpp"
#include "core/config.hpp"
#include "core/key_service.hpp"
#include "core/rotation/engine.hpp"

namespace kw::server {

/// The kinds [alerts] lets through (empty = every kind).
std::set<std::string> alert_kinds(const core::Config& config);

/// The [alerts] webhooks as dispatcher targets.
std::vector<core::alerts::Target> global_targets(const core::Config& config);

/// The hooks of `policy` (none for nullptr), filtered like the webhooks.
std::vector<core::alerts::Target> policy_targets(const core::rotation::Policy* policy, const core::Config& config);

/// The policy a rotation ran under: the one it recorded when it started, if
/// that policy is still applied, otherwise whichever governs the key now.
const core::rotation::Policy* rotation_policy(const core::rotation::PolicySet& policies, core::KeyService& keys,
                                              const core::RotationRecord& rotation);

}  // namespace kw::server
