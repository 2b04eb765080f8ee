#include "core/key.hpp"

namespace kw::core {

Family family_of(const ManagedKey& key) {
    switch (key.type) {
        case KeyType::rsa: return Family::rsa;
        case KeyType::ecdsa: return Family::ecdsa;
        case KeyType::ed25519: return Family::ed25519;
        case KeyType::jwt:
            switch (key.jwt_alg.value_or(JwtAlg::HS256)) {
                case JwtAlg::HS256: return Family::hmac;
                case JwtAlg::RS256:
                case JwtAlg::PS256: return Family::rsa;
                case JwtAlg::ES256: return Family::ecdsa;
                case JwtAlg::EdDSA: return Family::ed25519;
            }
            break;
        default: break;
    }
    return Family::hmac;
}

}  // namespace kw::core
