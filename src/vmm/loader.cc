#include "vmm/loader.h"

#include <algorithm>
#include <cstring>

#include "vmm/layout.h"
#include "vtime/hex.h"

namespace vtime::vmm {
namespace {

// ELF64 field offsets (System V ABI); read byte-wise so no alignment or
// endianness assumption about the host is made.
constexpr std::size_t kEhdrSize = 64;
constexpr std::size_t kPhdrSize = 56;
constexpr std::uint16_t kEtExec = 2;
constexpr std::uint16_t kEmAarch64 = 183;
constexpr std::uint32_t kPtLoad = 1;

std::uint64_t Le(std::span<const std::uint8_t> b, std::size_t at, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{b[at + i]} << (8 * i);
  return v;
}

bool IsElf(std::span<const std::uint8_t> image) {
  return image.size() >= 4 && image[0] == 0x7f && image[1] == 'E' && image[2] == 'L' &&
         image[3] == 'F';
}

// True if [addr, addr + size) lies inside RAM (no wrap-around).
bool InRam(const RamView& ram, std::uint64_t addr, std::uint64_t size) {
  if (addr < ram.base) return false;
  const std::uint64_t off = addr - ram.base;
  return off <= ram.bytes.size() && size <= ram.bytes.size() - off;
}

Result<LoadedImage> LoadElf(std::span<const std::uint8_t> image, RamView ram) {
  if (image.size() < kEhdrSize) return Fail(ErrorCode::kMalformed, "ELF image: truncated header");
  if (image[4] != 2) return Fail(ErrorCode::kMalformed, "ELF image: not 64-bit (ELFCLASS64)");
  if (image[5] != 1) return Fail(ErrorCode::kMalformed, "ELF image: not little endian");
  if (Le(image, 16, 2) != kEtExec) {
    return Fail(ErrorCode::kMalformed, "ELF image: not an executable (ET_EXEC)");
  }
  if (Le(image, 18, 2) != kEmAarch64) {
    return Fail(ErrorCode::kMalformed,
                "ELF image: machine " + std::to_string(Le(image, 18, 2)) + " is not AArch64 (183)");
  }
  const std::uint64_t entry = Le(image, 24, 8);
  const std::uint64_t phoff = Le(image, 32, 8);
  const std::uint64_t phentsize = Le(image, 54, 2);
  const std::uint64_t phnum = Le(image, 56, 2);
  if (phentsize != kPhdrSize) {
    return Fail(ErrorCode::kMalformed,
                "ELF image: program header size " + std::to_string(phentsize) + ", expected 56");
  }
  if (phoff > image.size() || phnum * kPhdrSize > image.size() - phoff) {
    return Fail(ErrorCode::kMalformed, "ELF image: program headers lie outside the file");
  }
  LoadedImage out;
  out.elf = true;
  out.entry = entry;
  out.low = ~std::uint64_t{0};
  bool any = false;
  bool entry_loaded = false;
  for (std::uint64_t i = 0; i < phnum; ++i) {
    const std::size_t ph = phoff + i * kPhdrSize;
    if (Le(image, ph, 4) != kPtLoad) continue;
    const std::uint64_t offset = Le(image, ph + 8, 8);
    const std::uint64_t paddr = Le(image, ph + 24, 8);
    const std::uint64_t filesz = Le(image, ph + 32, 8);
    const std::uint64_t memsz = Le(image, ph + 40, 8);
    const std::string which = "ELF segment " + std::to_string(i);
    if (filesz > memsz)
      return Fail(ErrorCode::kMalformed, which + ": file size exceeds memory size");
    if (offset > image.size() || filesz > image.size() - offset) {
      return Fail(ErrorCode::kMalformed, which + ": data lies outside the file");
    }
    if (!InRam(ram, paddr, memsz)) {
      return Fail(ErrorCode::kOutOfRange, which + " at " + Hex(paddr) + " size " + Hex(memsz) +
                                              " does not fit in guest RAM " + Hex(ram.base) + ".." +
                                              Hex(ram.base + ram.bytes.size()));
    }
    std::uint8_t* dst = ram.bytes.data() + (paddr - ram.base);
    if (filesz != 0) std::memcpy(dst, image.data() + offset, filesz);
    std::memset(dst + filesz, 0, memsz - filesz);
    if (memsz == 0) continue;
    any = true;
    out.low = std::min(out.low, paddr);
    out.high = std::max(out.high, paddr + memsz);
    if (entry >= paddr && entry - paddr < memsz) entry_loaded = true;
  }
  if (!any) return Fail(ErrorCode::kMalformed, "ELF image: no loadable segment");
  if (!entry_loaded) {
    return Fail(ErrorCode::kMalformed,
                "ELF image: entry point " + Hex(entry) + " is not inside a loaded segment");
  }
  return out;
}

}  // namespace

Result<LoadedImage> LoadImage(std::span<const std::uint8_t> image, RamView ram) {
  if (image.empty()) return Fail(ErrorCode::kMalformed, "image is empty");
  if (IsElf(image)) return LoadElf(image, ram);
  if (!InRam(ram, layout::kRawImageLoad, image.size())) {
    return Fail(ErrorCode::kOutOfRange, "raw image of " + std::to_string(image.size()) +
                                            " bytes does not fit in guest RAM at " +
                                            Hex(layout::kRawImageLoad) + " (give more memory)");
  }
  std::memcpy(ram.bytes.data() + (layout::kRawImageLoad - ram.base), image.data(), image.size());
  return LoadedImage{layout::kRawImageLoad, layout::kRawImageLoad,
                     layout::kRawImageLoad + image.size(), false};
}

}  // namespace vtime::vmm
