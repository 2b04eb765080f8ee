#include "core/lifecycle.hpp"

namespace kw::core {

bool transition_allowed(VersionState from, VersionState to) {
    using S = VersionState;
    switch (from) {
        case S::pre_active: return to == S::active || to == S::compromised || to == S::destroyed;
        case S::active: return to == S::suspended || to == S::deactivated || to == S::compromised;
        case S::suspended: return to == S::active || to == S::deactivated || to == S::compromised;
        case S::deactivated: return to == S::compromised || to == S::destroyed;
        case S::compromised: return to == S::destroyed;
        case S::destroyed: return false;
    }
    return false;
}

std::string transition_refusal(VersionState from, VersionState to) {
    return std::string("a version that is ") + std::string(to_string(from)) + " cannot become " +
           std::string(to_string(to));
}

}  // namespace kw::core
