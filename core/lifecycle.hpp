#pragma once
// The one place that says which key-version state transitions are allowed
// (NIST SP 800-57 Part 1, section 7):
//
//   pre_active  -> active | compromised | destroyed
//   active      -> suspended | deactivated | compromised
//   suspended   -> active | deactivated | compromised
//   deactivated -> compromised | destroyed
//   compromised -> destroyed
//   destroyed   -> (nothing)
//
// suspended and deactivated versions still verify; compromised and destroyed
// never do anything again (see can_sign / can_verify in types.hpp).
#include <string>

#include "core/types.hpp"

namespace kw::core {

[[nodiscard]] bool transition_allowed(VersionState from, VersionState to);

/// Human-readable refusal, e.g. "a destroyed version cannot become active".
[[nodiscard]] std::string transition_refusal(VersionState from, VersionState to);

}  // namespace kw::core
