#pragma once
// One function per hsm-keytool command (or command group). Each parses its
// own options from `args` (everything after the command name) and returns an
// exit code from exit_codes.hpp; errors propagate as exceptions to main().
#include <string>
#include <vector>

#include "tools/hsm-keytool/context.hpp"

namespace kw::keytool {

using Args = std::vector<std::string>;

int cmd_init(Context& ctx, const Args& args);
int cmd_status(Context& ctx, const Args& args);
int cmd_generate(Context& ctx, const Args& args);
int cmd_list(Context& ctx, const Args& args);
int cmd_show(Context& ctx, const Args& args);
int cmd_public_key(Context& ctx, const Args& args);
int cmd_revoke(Context& ctx, const Args& args);
int cmd_sign(Context& ctx, const Args& args);
int cmd_verify(Context& ctx, const Args& args);
int cmd_token(Context& ctx, const Args& args);
int cmd_suspend(Context& ctx, const Args& args);
int cmd_resume(Context& ctx, const Args& args);
int cmd_deactivate(Context& ctx, const Args& args);
int cmd_compromise(Context& ctx, const Args& args);
int cmd_destroy(Context& ctx, const Args& args);
int cmd_audit(Context& ctx, const Args& args);
int cmd_rotate(Context& ctx, const Args& args);
int cmd_policy(Context& ctx, const Args& args);
int cmd_jwt(Context& ctx, const Args& args);
int cmd_jwks(Context& ctx, const Args& args);

}  // namespace kw::keytool
