// The run folder and the files in it. A sweep can die at any moment (NCCL abort, OOM kill, a
// pulled node), so everything here is written to survive that: whole files appear atomically
// (temp file, fsync, rename), results.jsonl grows by whole lines only and is repaired on reopen,
// and --resume finds the newest run folder and the config points it already finished. Layout:
// <parent>/<name>-<UTC time>[-k]/{manifest.json, results.jsonl, bench.json, traces/, plots/,
// report.html}.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "harness/core/status.hpp"

namespace cpb {

// Current UTC time: "20261121T213000Z" (safe in file names, sorts by time) and
// "2026-11-21T21:30:00Z".
std::string utc_timestamp_for_path();
std::string utc_iso8601();

// Replaces `path` with `content` so that a reader sees either the old file or the whole new one:
// writes a uniquely named temp file in the same folder, fsyncs it, renames it over `path` and
// fsyncs the folder. The temp file is removed on failure.
Status write_file_atomic(const std::string& path, std::string_view content);
// Same, with the content given as consecutive pieces (avoids copying a large payload).
Status write_file_atomic_parts(const std::string& path, const std::vector<std::string_view>& parts);

// Appends JSON records to a .jsonl file, one line each, durable when append() returns. Each line
// goes out in one write() on an O_APPEND descriptor and is fsynced, so a crash leaves at worst a
// partial last line; opening repairs that by cutting the partial line off. The file is locked
// (flock) while open so two processes cannot interleave records. append() is thread-safe.
class JsonlWriter {
 public:
  static Expected<JsonlWriter> open(const std::string& path);

  JsonlWriter(JsonlWriter&& other) noexcept;
  JsonlWriter& operator=(JsonlWriter&& other) noexcept;
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;
  ~JsonlWriter();

  // Writes record.dump() + '\n' (invalid UTF-8 in strings is replaced, never thrown on).
  Status append(const nlohmann::json& record);
  // Bytes of a partial last line removed when the file was opened (0 if it was clean).
  int64_t dropped_bytes() const { return dropped_bytes_; }
  const std::string& path() const { return path_; }

 private:
  JsonlWriter() = default;
  void close();

  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;  // file length after the last complete record, to undo a short write
  int64_t dropped_bytes_ = 0;
  std::unique_ptr<std::mutex> mu_;
};

// Reads every complete line of a .jsonl file. A last line without '\n' is a record cut short by a
// crash and is ignored; a complete line that is not valid JSON is an error naming its line
// number. Blank lines are skipped.
Expected<std::vector<nlohmann::json>> read_jsonl(const std::string& path);

struct RunFolder {
  std::string dir;        // <parent>/<name>-<timestamp>[-k]
  std::string name;       // experiment name
  std::string timestamp;  // utc_timestamp_for_path() at creation ("" when opened by path)

  std::string file(std::string_view relative) const;
  std::string manifest_path() const { return file("manifest.json"); }
  std::string results_path() const { return file("results.jsonl"); }
  std::string bench_path() const { return file("bench.json"); }
  std::string traces_dir() const { return file("traces"); }
  std::string plots_dir() const { return file("plots"); }
  std::string report_path() const { return file("report.html"); }
};

// Creates <parent>/<name>-<UTC time>, creating parent folders as needed. If that folder already
// exists (two runs in the same second) it takes <...>-2, -3, ... instead; mkdir decides, so two
// processes never get the same folder. `name` must be a plain file name component.
Expected<RunFolder> create_run_folder(const std::string& parent, const std::string& name);

// The newest <parent>/<name>-<timestamp>[-k] folder that holds a manifest.json (newest by the
// timestamp and suffix in its name, not by mtime). Folders of other experiments whose names
// merely start with `name-` do not match.
Expected<std::string> latest_run_folder(const std::string& parent, const std::string& name);

// Ids ("point_id") of the records that need not run again on --resume: status "ok" or "invalid".
// Points that ended in "error" are retried; records without a string point_id are ignored.
std::set<std::string> finished_point_ids(const std::vector<nlohmann::json>& records);

}  // namespace cpb
