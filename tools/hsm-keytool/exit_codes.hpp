#pragma once
// hsm-keytool's exit codes. Stable: scripts depend on them (docs/cli.md).
namespace kw::keytool {

enum ExitCode : int {
    kOk = 0,
    kFailed = 1,          // the operation failed for another reason
    kUsage = 2,           // bad arguments
    kTokenNotFound = 3,   // module cannot load or no matching token
    kAuthFailed = 4,      // wrong PIN, PIN locked, no PIN available
    kUnknownKey = 5,      // no such key or version
    kStoreLocked = 6,     // another process holds the store
    kInvalid = 7,         // signature or token did not verify
    kNotPermitted = 8,    // key state, revocation or expiry forbids it
    kNotInitialized = 9,  // token has no keywarden root keys
    kConfig = 10,         // configuration file or store URL is wrong
    kStoreFailure = 11,   // store I/O or schema problem
    kExists = 12,         // name already taken
    kAuditFailure = 13,   // the audit event could not be written: nothing was done
    kTampered = 14,       // audit verify found the log altered
};

/// Runs `body`, turning every exception into a message on stderr and its exit code.
template <typename F>
int guarded(F&& body);

}  // namespace kw::keytool
