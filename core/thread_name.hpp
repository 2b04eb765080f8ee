#pragma once
// Names the calling thread (as `top -H`, `ps -L`, perf and gdb show it).
// Linux keeps at most 15 characters; longer names are cut, never refused.
#include <pthread.h>

#include <string>
#include <string_view>

namespace kw::core {

inline void name_this_thread(std::string_view name) {
    const std::string cut(name.substr(0, 15));
    (void)::pthread_setname_np(::pthread_self(), cut.c_str());
}

}  // namespace kw::core
