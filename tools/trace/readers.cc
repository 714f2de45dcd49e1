#include "readers.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#ifdef VTIME_HAVE_TRACECMD
#include "dat_shim.h"
#endif

namespace vtime::trace_tool {

namespace {

using trace::TraceRecord;
using trace::TraceStream;

// A trace-cmd file starts with these bytes (its version follows).
constexpr std::string_view kDatMagic = "\x17\x08\x44tracing";

std::uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

#ifdef VTIME_HAVE_TRACECMD
// One open .dat file, shared by the streams of its CPUs.
struct DatFile {
  explicit DatFile(vt_dat* d, std::uint64_t bytes) : dat(d), size(bytes) {}
  ~DatFile() { vt_dat_close(dat); }
  DatFile(const DatFile&) = delete;
  DatFile& operator=(const DatFile&) = delete;
  vt_dat* dat;
  std::uint64_t size;
};

class DatCpuStream final : public TraceStream {
 public:
  DatCpuStream(std::shared_ptr<DatFile> file, int cpu)
      : file_(std::move(file)), cpu_(cpu), reader_(vt_dat_cpu_open(file_->dat, cpu)) {}
  ~DatCpuStream() override { vt_dat_cpu_close(reader_); }
  DatCpuStream(const DatCpuStream&) = delete;
  DatCpuStream& operator=(const DatCpuStream&) = delete;

  Result<bool> Next(TraceRecord* out) override {
    if (reader_ == nullptr) return Fail(ErrorCode::kSystem, "out of memory for a trace reader");
    vt_dat_record r{};
    if (vt_dat_next(reader_, &r) == 0) return false;
    out->ts_ns = r.ts_ns;
    out->cpu = static_cast<std::uint32_t>(cpu_);
    out->pid = r.pid;
    out->name = r.name;
    out->info = std::string_view(r.info, r.info_len);
    offset_ = r.file_offset;
    return true;
  }

  double Done() const override {
    return file_->size == 0 ? -1 : static_cast<double>(offset_) / static_cast<double>(file_->size);
  }

 private:
  std::shared_ptr<DatFile> file_;
  int cpu_;
  vt_dat_cpu* reader_;
  std::uint64_t offset_ = 0;
};
#endif

// A text trace, read in blocks; a record's views point into the block and
// stay valid until the next call.
class TextStream final : public TraceStream {
 public:
  TextStream(std::FILE* f, std::string path, std::uint64_t size)
      : f_(f), path_(std::move(path)), size_(size) {
    buf_.resize(kBlock);
  }
  ~TextStream() override { std::fclose(f_); }
  TextStream(const TextStream&) = delete;
  TextStream& operator=(const TextStream&) = delete;

  Result<bool> Next(TraceRecord* out) override {
    for (;;) {
      std::string_view line;
      if (!NextLine(&line)) {
        if (std::ferror(f_)) {
          return Fail(ErrorCode::kSystem, path_ + ": read: " + std::strerror(errno));
        }
        return false;
      }
      ++line_no_;
      auto r = trace::ParseFtraceLine(line);
      if (!r) {
        return Fail(ErrorCode::kMalformed,
                    path_ + ":" + std::to_string(line_no_) + ": " + r.error().context);
      }
      if (*r) {
        *out = **r;
        return true;
      }
    }
  }

  double Done() const override {
    return size_ == 0 ? -1 : static_cast<double>(consumed_) / static_cast<double>(size_);
  }

 private:
  static constexpr std::size_t kBlock = 1 << 20;
  // The longest line accepted: a trace_marker write is at most a page.
  static constexpr std::size_t kMaxLine = 64 * 1024;

  bool NextLine(std::string_view* line) {
    for (;;) {
      const std::string_view have(buf_.data() + begin_, end_ - begin_);
      const std::size_t nl = have.find('\n');
      if (nl != have.npos) {
        *line = have.substr(0, nl);
        begin_ += nl + 1;
        consumed_ += nl + 1;
        return true;
      }
      if (eof_) {
        if (have.empty()) return false;
        *line = have;
        consumed_ += have.size();
        begin_ = end_;
        return true;
      }
      // Keep the partial line, refill behind it.
      std::memmove(buf_.data(), buf_.data() + begin_, have.size());
      end_ = have.size();
      begin_ = 0;
      if (end_ >= kMaxLine) {
        // A line longer than any trace writes: cut it here so the parser
        // reports it rather than the buffer growing.
        *line = std::string_view(buf_.data(), end_);
        consumed_ += end_;
        begin_ = end_;
        return true;
      }
      const std::size_t n = std::fread(buf_.data() + end_, 1, buf_.size() - end_, f_);
      if (n == 0) eof_ = true;
      end_ += n;
    }
  }

  std::FILE* f_;
  std::string path_;
  std::uint64_t size_;
  std::vector<char> buf_;
  std::size_t begin_ = 0, end_ = 0;
  bool eof_ = false;
  std::uint64_t consumed_ = 0;
  std::uint64_t line_no_ = 0;
};

}  // namespace

Result<std::vector<std::unique_ptr<TraceStream>>> OpenTrace(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return Fail(ErrorCode::kSystem, path + ": " + std::strerror(errno));
  char head[16] = {};
  const std::size_t n = std::fread(head, 1, sizeof head, f);
  std::vector<std::unique_ptr<TraceStream>> out;
  const std::uint64_t size = FileSize(path);
  if (n >= kDatMagic.size() && std::string_view(head, kDatMagic.size()) == kDatMagic) {
    std::fclose(f);
#ifndef VTIME_HAVE_TRACECMD
    return Fail(ErrorCode::kUnsupported,
                path +
                    ": a trace-cmd file, and this vtime-trace was built without libtracecmd "
                    "(merge it on a host that has it, or give `trace-cmd report` text)");
#else
    vt_dat* handle = vt_dat_open(path.c_str());
    if (handle == nullptr) {
      return Fail(ErrorCode::kMalformed,
                  path +
                      ": a trace-cmd file that libtracecmd cannot read (damaged, truncated "
                      "or of a newer version)");
    }
    auto file = std::make_shared<DatFile>(handle, size);
    const int cpus = vt_dat_cpus(handle);
    for (int cpu = 0; cpu < cpus; ++cpu) out.push_back(std::make_unique<DatCpuStream>(file, cpu));
    if (out.empty()) return Fail(ErrorCode::kMalformed, path + ": a trace-cmd file of no CPU");
    return out;
#endif
  }
  // Anything else must be text: a NUL in its first bytes says it is not.
  if (std::memchr(head, 0, n) != nullptr) {
    std::fclose(f);
    return Fail(ErrorCode::kMalformed,
                path + ": neither a trace-cmd .dat file nor ftrace text (it holds NUL bytes)");
  }
  std::rewind(f);
  out.push_back(std::make_unique<TextStream>(f, path, size));
  return out;
}

}  // namespace vtime::trace_tool
