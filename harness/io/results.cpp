// Crash-safe files of the run folder. POSIX calls are used directly (open/write/fsync/rename/
// flock) because iostreams can neither promise a single write() per record nor fsync, and both
// are what keeps results.jsonl parseable after a kill -9 in the middle of a sweep.
#include "harness/io/results.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <tuple>
#include <utility>

namespace cpb {
namespace fs = std::filesystem;

namespace {

std::string errno_str(int err) {
  return std::strerror(err);
}

std::tm utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return tm;
}

std::string format_tm(const char* format, const std::tm& tm) {
  char buf[64];
  const size_t n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

// Writes all of [data, data+size), retrying short writes and EINTR. Returns 0 or an errno.
int write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

// Makes a rename durable. Best effort: some file systems refuse fsync on a folder.
void fsync_folder(const std::string& file_path) {
  fs::path dir = fs::path(file_path).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// "<16-char timestamp>" or "<timestamp>-<k>" with k >= 2; fills the sort key on success.
bool parse_run_suffix(std::string_view s, std::string& stamp, int64_t& k) {
  if (s.size() < 16) return false;
  for (size_t i = 0; i < 16; ++i) {
    const char c = s[i];
    const bool want_digit = i != 8 && i != 15;
    if (want_digit ? !(c >= '0' && c <= '9') : c != (i == 8 ? 'T' : 'Z')) return false;
  }
  stamp = std::string(s.substr(0, 16));
  k = 1;
  if (s.size() == 16) return true;
  if (s[16] != '-' || s.size() == 17 || s.size() > 17 + 9) return false;
  int64_t v = 0;
  for (char c : s.substr(17)) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < 2) return false;
  k = v;
  return true;
}

Status check_name(const std::string& name) {
  CPB_REQUIRE(!name.empty(), "run name is empty; give the experiment a `name`");
  CPB_REQUIRE(name != "." && name != ".." && name.find('/') == std::string::npos &&
                  name.find('\0') == std::string::npos,
              "run name '{}' cannot be used as a folder name (no '/', not '.' or '..')", name);
  return ok_status();
}

}  // namespace

std::string utc_timestamp_for_path() {
  return format_tm("%Y%m%dT%H%M%SZ", utc_now());
}
std::string utc_iso8601() {
  return format_tm("%Y-%m-%dT%H:%M:%SZ", utc_now());
}

// ---------------------------------------------------------------------------------------------
// Atomic whole-file writes.

Status write_file_atomic_parts(const std::string& path,
                               const std::vector<std::string_view>& parts) {
  CPB_REQUIRE(!path.empty() && path.back() != '/', "cannot write to '{}': not a file path", path);
  // Unique per process and call, so concurrent writers of the same file never share a temp.
  static std::atomic<uint64_t> counter{0};
  int fd = -1;
  std::string tmp;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), counter.fetch_add(1));
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) return CPB_ERROR("cannot create '{}': {}", tmp, errno_str(errno));

  int err = 0;
  for (std::string_view part : parts) {
    if ((err = write_all(fd, part.data(), part.size())) != 0) break;
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return CPB_ERROR("cannot write '{}': {}", path, errno_str(err));
  }
  fsync_folder(path);
  return ok_status();
}

Status write_file_atomic(const std::string& path, std::string_view content) {
  CPB_TRY(write_file_atomic_parts(path, {content}));
  return ok_status();
}

// ---------------------------------------------------------------------------------------------
// JsonlWriter.

Expected<JsonlWriter> JsonlWriter::open(const std::string& path) {
  JsonlWriter w;
  w.path_ = path;
  w.mu_ = std::make_unique<std::mutex>();
  w.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (w.fd_ < 0) return CPB_ERROR("cannot open results file '{}': {}", path, errno_str(errno));
  if (::flock(w.fd_, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
    return CPB_ERROR(
        "'{}' is being written by another process (is another cpbench run using "
        "this run folder?)",
        path);
  struct stat st {};
  if (::fstat(w.fd_, &st) != 0) return CPB_ERROR("cannot stat '{}': {}", path, errno_str(errno));
  if (!S_ISREG(st.st_mode)) return CPB_ERROR("results file '{}' is not a regular file", path);

  // A crash between write() and its completion leaves a partial last line; cut back to the
  // last '\n' so the file is valid JSONL again before anything is appended after it.
  int64_t size = st.st_size;
  int64_t keep = size;
  if (size > 0) {
    char buf[65536];
    int64_t end = size;
    bool found = false;
    bool first = true;
    while (end > 0 && !found) {
      const int64_t begin = std::max<int64_t>(0, end - static_cast<int64_t>(sizeof buf));
      const auto len = static_cast<size_t>(end - begin);
      if (::pread(w.fd_, buf, len, begin) != static_cast<ssize_t>(len))
        return CPB_ERROR("cannot read '{}': {}", path, errno_str(errno));
      if (first && buf[len - 1] == '\n') break;  // clean file: nothing to drop
      first = false;
      for (size_t i = len; i-- > 0;) {
        if (buf[i] == '\n') {
          keep = begin + static_cast<int64_t>(i) + 1;
          found = true;
          break;
        }
      }
      end = begin;
    }
    if (!first && !found) keep = 0;
    if (keep != size) {
      if (::ftruncate(w.fd_, keep) != 0 || ::fsync(w.fd_) != 0)
        return CPB_ERROR("cannot repair the partial last line of '{}': {}", path, errno_str(errno));
    }
  }
  w.size_ = keep;
  w.dropped_bytes_ = size - keep;
  return w;
}

JsonlWriter::JsonlWriter(JsonlWriter&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      size_(other.size_),
      dropped_bytes_(other.dropped_bytes_),
      mu_(std::move(other.mu_)) {}

JsonlWriter& JsonlWriter::operator=(JsonlWriter&& other) noexcept {
  if (this != &other) {
    close();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
    dropped_bytes_ = other.dropped_bytes_;
    mu_ = std::move(other.mu_);
  }
  return *this;
}

JsonlWriter::~JsonlWriter() {
  close();
}

void JsonlWriter::close() {
  if (fd_ >= 0) ::close(fd_);  // also releases the flock
  fd_ = -1;
}

Status JsonlWriter::append(const nlohmann::json& record) {
  std::string line;
  try {
    // replace: a stray invalid UTF-8 byte in some string must not cost the whole record.
    line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const std::exception& e) {
    return CPB_ERROR("cannot serialise a record for '{}': {}", path_, e.what());
  }
  line += '\n';
  CPB_REQUIRE(mu_ != nullptr, "JsonlWriter for '{}' was moved from", path_);
  std::lock_guard<std::mutex> lock(*mu_);
  CPB_REQUIRE(fd_ >= 0, "JsonlWriter for '{}' is closed", path_);
  ssize_t n;
  do {
    n = ::write(fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(line.size())) {
    const int err = n < 0 ? errno : ENOSPC;
    // Undo a short write (disk full): a partial line must not stay in front of later records.
    if (n > 0 && ::ftruncate(fd_, size_) != 0) {
      return CPB_ERROR("cannot append to '{}' ({}) and cannot cut the partial line back: {}", path_,
                       errno_str(err), errno_str(errno));
    }
    return CPB_ERROR("cannot append to '{}': {}", path_, errno_str(err));
  }
  size_ += n;
  if (::fdatasync(fd_) != 0)
    return CPB_ERROR("cannot flush '{}' to disk: {}", path_, errno_str(errno));
  return ok_status();
}

// ---------------------------------------------------------------------------------------------
// Reading.

Expected<std::vector<nlohmann::json>> read_jsonl(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return CPB_ERROR("'{}': no such file", path);
  if (fs::is_directory(path, ec)) return CPB_ERROR("'{}' is a directory, not a .jsonl file", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) return CPB_ERROR("cannot open '{}': {}", path, errno_str(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return CPB_ERROR("cannot read '{}'", path);
  const std::string text = std::move(ss).str();

  std::vector<nlohmann::json> records;
  size_t begin = 0;
  int64_t line_no = 0;
  while (begin < text.size()) {
    const size_t nl = text.find('\n', begin);
    if (nl == std::string::npos) break;  // partial last line from a crash: not a record yet
    ++line_no;
    const std::string_view line(text.data() + begin, nl - begin);
    begin = nl + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    try {
      records.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      return CPB_ERROR("{}:{}: corrupt record ({}); fix or delete that line", path, line_no,
                       e.what());
    }
  }
  return records;
}

// ---------------------------------------------------------------------------------------------
// Run folders.

std::string RunFolder::file(std::string_view relative) const {
  return (fs::path(dir) / fs::path(relative)).string();
}

Expected<RunFolder> create_run_folder(const std::string& parent, const std::string& name) {
  CPB_TRY(check_name(name));
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) return CPB_ERROR("cannot create results folder '{}': {}", parent, ec.message());

  RunFolder rf;
  rf.name = name;
  rf.timestamp = utc_timestamp_for_path();
  const std::string base = (fs::path(parent) / (name + "-" + rf.timestamp)).string();
  // mkdir either creates the folder or fails with EEXIST, so the first success is ours alone.
  for (int k = 1; k <= 10000; ++k) {
    std::string dir = k == 1 ? base : fmt::format("{}-{}", base, k);
    if (::mkdir(dir.c_str(), 0777) == 0) {
      rf.dir = std::move(dir);
      return rf;
    }
    if (errno != EEXIST)
      return CPB_ERROR("cannot create run folder '{}': {}", dir, errno_str(errno));
  }
  return CPB_ERROR("cannot create a run folder '{}': 10000 folders of that name exist", base);
}

Expected<std::string> latest_run_folder(const std::string& parent, const std::string& name) {
  CPB_TRY(check_name(name));
  const std::string hint = "drop --resume to start a new run, or pass --run-dir";
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    return CPB_ERROR("no run folder to resume: '{}' does not exist; {}", parent, hint);

  const std::string prefix = name + "-";
  std::tuple<std::string, int64_t, std::string> best;  // (timestamp, suffix, path)
  bool any = false;
  fs::directory_iterator it(parent, ec), end;
  if (ec) return CPB_ERROR("cannot list '{}': {}", parent, ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return CPB_ERROR("cannot list '{}': {}", parent, ec.message());
    const std::string fname = it->path().filename().string();
    if (fname.rfind(prefix, 0) != 0) continue;
    std::string stamp;
    int64_t k = 0;
    if (!parse_run_suffix(std::string_view(fname).substr(prefix.size()), stamp, k)) continue;
    std::error_code ec2;
    if (!fs::is_regular_file(it->path() / "manifest.json", ec2)) continue;
    auto cand = std::make_tuple(stamp, k, it->path().string());
    if (!any || cand > best) best = std::move(cand);
    any = true;
  }
  if (!any)
    return CPB_ERROR("no run folder '{}-<time>' with a manifest.json under '{}'; {}", name, parent,
                     hint);
  return std::get<2>(best);
}

std::set<std::string> finished_point_ids(const std::vector<nlohmann::json>& records) {
  std::set<std::string> ids;
  for (const auto& r : records) {
    if (!r.is_object()) continue;
    const auto id = r.find("point_id");
    const auto status = r.find("status");
    if (id == r.end() || !id->is_string() || status == r.end() || !status->is_string()) continue;
    const auto& s = status->get_ref<const std::string&>();
    if (s == "ok" || s == "invalid") ids.insert(id->get<std::string>());
  }
  return ids;
}

}  // namespace cpb
