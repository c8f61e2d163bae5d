// Provenance collection. Each probe (git through popen, uname, /proc/cpuinfo, gethostname) is
// allowed to fail on its own and then contributes "unknown"; nothing here returns an error,
// because provenance rides along with a run and must never be the reason a run stops.
#include "harness/io/provenance.hpp"

#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <system_error>

#include "harness/io/results.hpp"

extern char** environ;  // POSIX; not declared by <unistd.h> without _GNU_SOURCE

namespace cpb {
namespace {

constexpr const char* kUnknown = "unknown";

// Output of a shell command, or nullopt when it cannot run or exits non-zero.
std::optional<std::string> run_capture(const std::string& command) {
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return std::nullopt;
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

nlohmann::json git_info() {
  nlohmann::json g = {{"source_dir", kUnknown}, {"sha", kUnknown}, {"dirty", kUnknown}};
#ifdef CPBENCH_SOURCE_DIR
  const std::string dir = CPBENCH_SOURCE_DIR;
  g["source_dir"] = dir;
  std::error_code ec;
  if (dir.empty() || !std::filesystem::is_directory(dir, ec)) return g;
  const std::string git = "git -C " + shell_quote(dir);
  if (auto sha = run_capture(git + " rev-parse HEAD 2>/dev/null")) {
    std::string s = trim(*sha);
    if (!s.empty()) g["sha"] = s;
  }
  // --porcelain lists modified and untracked files; generated runs live in ignored folders, so
  // a benchmark run does not make its own tree look dirty.
  if (g["sha"] != kUnknown)
    if (auto status = run_capture(git + " status --porcelain 2>/dev/null"))
      g["dirty"] = !trim(*status).empty();
#endif
  // A copied tree (the lent GPU machines get one, without .git or with a stale one): the copier
  // says which commit it was, so that a number measured there names its source. The caller's
  // word wins over what git reads there; a different git answer is kept beside it.
  if (const char* sha = std::getenv("CPBENCH_GIT_SHA"); sha != nullptr && *sha != '\0') {
    if (g["sha"] != sha) {
      if (g["sha"] != kUnknown) g["sha_git"] = g["sha"];
      g["dirty"] = kUnknown;  // git's answer was about another tree state
    }
    g["sha"] = std::string(sha);
    g["sha_from"] = "CPBENCH_GIT_SHA";
    if (const char* d = std::getenv("CPBENCH_GIT_DIRTY"); d != nullptr && *d != '\0')
      g["dirty"] = std::string(d) != "0";
  }
  return g;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string model = trim(line.substr(colon + 1));
    if (!model.empty()) return model;
  }
  return kUnknown;
}

nlohmann::json compiler_info() {
#if defined(__clang__)
  const char* id = "clang";
#elif defined(__GNUC__)
  const char* id = "gcc";
#else
  const char* id = kUnknown;
#endif
#ifdef __VERSION__
  const char* version = __VERSION__;
#else
  const char* version = kUnknown;
#endif
  return {{"id", id}, {"version", version}};
}

// argv and the environment may hold bytes that are not UTF-8 (a Latin-1 file name), on which
// nlohmann's dump() would throw later; U+FFFD replaces them here, once.
std::string valid_utf8(const std::string& s) {
  const std::string quoted =
      nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(quoted).get<std::string>();
}

// Environment variables that change how fast or where a run goes.
nlohmann::json relevant_env() {
  nlohmann::json env = nlohmann::json::object();
  for (char** e = environ; e && *e; ++e) {
    const std::string_view kv(*e);
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string key(kv.substr(0, eq));
    const bool keep = key.rfind("NCCL_", 0) == 0 || key.rfind("CPBENCH_", 0) == 0 ||
                      key == "CUDA_VISIBLE_DEVICES" || key == "CUDA_DEVICE_MAX_CONNECTIONS" ||
                      key == "CUDA_LAUNCH_BLOCKING" || key == "OMP_NUM_THREADS";
    if (keep) env[key] = valid_utf8(std::string(kv.substr(eq + 1)));
  }
  return env;
}

}  // namespace

std::string shell_quote(std::string_view arg) {
  if (arg.empty()) return "''";
  const auto safe = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("_@%+=:,./-").find(c) != std::string_view::npos;
  };
  if (std::all_of(arg.begin(), arg.end(), safe)) return std::string(arg);
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'')
      out += "'\"'\"'";
    else
      out += c;
  }
  return out + "'";
}

std::string shell_join(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) {
    if (!out.empty()) out += ' ';
    out += shell_quote(a);
  }
  return out;
}

nlohmann::json collect_provenance(int argc, const char* const* argv) {
  nlohmann::json p;
#ifdef CPBENCH_VERSION
  p["cpbench_version"] = CPBENCH_VERSION;
#else
  p["cpbench_version"] = kUnknown;
#endif
  p["git"] = git_info();

  char host[256] = {};
  p["host"] = ::gethostname(host, sizeof host - 1) == 0 && host[0] ? std::string(host) : kUnknown;

  struct utsname u {};
  if (::uname(&u) == 0) {
    p["os"] = {{"sysname", u.sysname},
               {"release", u.release},
               {"version", u.version},
               {"machine", u.machine}};
  } else {
    p["os"] = {
        {"sysname", kUnknown}, {"release", kUnknown}, {"version", kUnknown}, {"machine", kUnknown}};
  }

  const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  p["cpu"] = {{"model", cpu_model()}};
  if (cores > 0)
    p["cpu"]["logical_cores"] = cores;
  else
    p["cpu"]["logical_cores"] = kUnknown;

  p["compiler"] = compiler_info();

  std::error_code ec;
  const auto cwd = std::filesystem::current_path(ec);
  p["cwd"] = ec ? std::string(kUnknown) : cwd.string();

  std::vector<std::string> args;
  for (int i = 0; argv && i < argc; ++i) args.push_back(valid_utf8(argv[i] ? argv[i] : ""));
  p["argv"] = args;
  p["repro"] = shell_join(args);
  p["env"] = relevant_env();
  p["time_utc"] = utc_iso8601();
  return p;
}

}  // namespace cpb
