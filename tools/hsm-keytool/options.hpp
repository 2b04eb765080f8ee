#pragma once
// Boost.Program_options glue shared by the commands.
#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace kw::keytool {

namespace po = boost::program_options;

/// Parses `args` against `desc` (+ positionals); throws po::error on mistakes,
/// which main() reports as a usage error (exit 2).
inline po::variables_map parse(const std::vector<std::string>& args, const po::options_description& desc,
                               const po::positional_options_description& pos = {}) {
    po::variables_map vm;
    po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
    po::notify(vm);
    return vm;
}

}  // namespace kw::keytool
