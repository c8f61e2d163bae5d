// Bounded text-file reading shared by the config parser and the hardware-profile reader.
#include "harness/core/text_file.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>

namespace cpb {

Expected<std::string> read_text_file(const std::string& path, const std::string& what,
                                     size_t max_bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    const std::string why =
        st.type() == fs::file_type::not_found || !ec ? "no such file" : ec.message();
    std::string where;
    if (fs::path(path).is_relative()) {
      std::error_code cwd_ec;
      const auto cwd = fs::current_path(cwd_ec);
      where = fmt::format(" (a relative path is taken from the working directory{})",
                          cwd_ec ? "" : ", " + cwd.string());
    }
    return CPB_ERROR("{}: cannot read the {}: {}{}: check the path", path, what, why, where);
  }
  if (fs::is_directory(st))
    return CPB_ERROR("{}: is a folder, not the {}: give the path of a .yaml file", path, what);
  auto size = fs::file_size(path, ec);
  if (!ec && size > max_bytes)
    return CPB_ERROR("{}: the file is {} bytes, more than the {} the {} may have: is it the "
                     "right file?",
                     path, size, max_bytes, what);
  std::ifstream in(path, std::ios::binary);
  if (!in) return CPB_ERROR("{}: cannot open the {} for reading", path, what);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return CPB_ERROR("{}: error while reading the {}", path, what);
  return text;
}

}  // namespace cpb
