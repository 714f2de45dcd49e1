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

// The arm64 Image header (booting.rst): fields at fixed offsets, all little
// endian since Linux 3.17.
constexpr std::size_t kArm64HeaderSize = 64;
constexpr std::size_t kArm64TextOffsetAt = 8;
constexpr std::size_t kArm64ImageSizeAt = 16;
constexpr std::size_t kArm64FlagsAt = 24;
constexpr std::size_t kArm64MagicAt = 56;
constexpr std::uint8_t kArm64Magic[4] = {'A', 'R', 'M', 0x64};
// Kernels before 3.17 leave image_size 0 and their text_offset is then of
// unknown endianness: the protocol says to assume this value.
constexpr std::uint64_t kLegacyTextOffset = 0x80000;
constexpr std::uint64_t k2MiB = 2ULL << 20;
constexpr std::uint64_t kPage = 4096;
// Kernels before 4.2 need the device tree within 512 MiB of their base.
constexpr std::uint64_t kDtbWindow = 512ULL << 20;

std::string Mib(std::uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20); }

}  // namespace

unsigned Arm64ImageHeader::page_size_kib() const {
  static constexpr unsigned kKib[4] = {0, 4, 16, 64};
  return kKib[(flags >> 1) & 3];
}

bool HasArm64ImageMagic(std::span<const std::uint8_t> image) {
  return image.size() >= kArm64HeaderSize &&
         std::memcmp(image.data() + kArm64MagicAt, kArm64Magic, sizeof kArm64Magic) == 0;
}

Result<Arm64ImageHeader> ParseArm64ImageHeader(std::span<const std::uint8_t> image) {
  if (!HasArm64ImageMagic(image)) {
    return Fail(ErrorCode::kInvalidArgument,
                "not an arm64 Linux Image: no \"ARM\\x64\" magic at offset 56 (an ELF or raw "
                "program goes without --kernel)");
  }
  Arm64ImageHeader h;
  h.image_size = Le(image, kArm64ImageSizeAt, 8);
  h.flags = h.image_size == 0 ? 0 : Le(image, kArm64FlagsAt, 8);
  h.text_offset = h.image_size == 0 ? kLegacyTextOffset : Le(image, kArm64TextOffsetAt, 8);
  if (h.big_endian()) {
    return Fail(ErrorCode::kUnsupported,
                "arm64 Image: a big-endian kernel (flags bit 0); vtvmm runs little-endian guests");
  }
  if (h.text_offset % kPage != 0 || h.text_offset >= k2MiB) {
    return Fail(ErrorCode::kMalformed, "arm64 Image: text_offset " + Hex(h.text_offset) +
                                           " is not a 4 KiB multiple below 2 MiB");
  }
  if (h.image_size != 0 && h.image_size < image.size()) {
    return Fail(ErrorCode::kMalformed, "arm64 Image: image_size " + Hex(h.image_size) +
                                           " is smaller than the file (" +
                                           std::to_string(image.size()) + " bytes)");
  }
  return h;
}

Result<LoadedImage> LoadArm64Image(std::span<const std::uint8_t> image, RamView ram) {
  auto header = ParseArm64ImageHeader(image);
  if (!header) return tl::unexpected(header.error());
  // RAM's first 2 MiB boundary is the base for both placements the flags
  // allow: "as low as possible" and "anywhere below 48 bits".
  const std::uint64_t base = (ram.base + k2MiB - 1) & ~(k2MiB - 1);
  const std::uint64_t load = base + header->text_offset;
  const std::uint64_t need =
      header->image_size != 0 ? header->image_size : static_cast<std::uint64_t>(image.size());
  if (!InRam(ram, load, need)) {
    return Fail(ErrorCode::kOutOfRange,
                "the kernel needs " + Mib(load + need - ram.base) + " MiB from the start of RAM (" +
                    (header->image_size != 0 ? "its image_size " : "its file size ") + Hex(need) +
                    " at " + Hex(load) + "), more than the guest's " + Mib(ram.bytes.size()) +
                    " MiB: give more memory (--memory)");
  }
  std::uint8_t* dst = ram.bytes.data() + (load - ram.base);
  std::memcpy(dst, image.data(), image.size());
  // The BSS the kernel counts in image_size must not hold stale bytes from
  // a previous boot (the kernel clears it, but early code may look first).
  std::memset(dst + image.size(), 0, need - image.size());
  LoadedImage out;
  out.entry = load;
  out.low = load;
  out.high = load + need;
  out.arm64_image = true;
  return out;
}

Result<BootData> PlaceBootData(std::uint64_t floor, std::uint64_t limit, std::uint64_t dtb_size,
                               std::uint64_t initrd_size) {
  auto too_small = [&](const std::string& what) {
    return Fail(ErrorCode::kOutOfRange, what + " does not fit between the image's end " +
                                            Hex(floor) + " and " + Hex(limit) +
                                            ": give the guest more memory (--memory)");
  };
  if (limit < floor || dtb_size + kPage > limit - floor) return too_small("the device tree");
  BootData d;
  d.dtb = (limit - dtb_size - kPage) & ~(kPage - 1);
  if (d.dtb < floor) return too_small("the device tree");
  if (initrd_size == 0) {
    d.initrd_start = d.initrd_end = d.dtb;
    return d;
  }
  if (initrd_size > d.dtb - floor) {
    return too_small("the initrd of " + std::to_string(initrd_size) + " bytes");
  }
  d.initrd_start = (d.dtb - initrd_size) & ~(kPage - 1);
  if (d.initrd_start < floor) {
    return too_small("the initrd of " + std::to_string(initrd_size) + " bytes");
  }
  d.initrd_end = d.initrd_start + initrd_size;
  return d;
}

std::uint64_t BootDataLimit(const LoadedImage& image, std::uint64_t ram_base,
                            std::uint64_t ram_size) {
  const std::uint64_t end = ram_base + ram_size;
  if (!image.arm64_image) return end;
  const std::uint64_t base = image.low & ~(k2MiB - 1);
  return std::min(end, base + kDtbWindow);
}

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
