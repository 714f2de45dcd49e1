#include "vmm/guest_memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <utility>

namespace vtime::vmm {

Result<GuestMemory> GuestMemory::Create(std::uint64_t size, const std::string& what) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return Fail(ErrorCode::kSystem, "mmap of " + std::to_string(size >> 20) + " MiB for " + what,
                errno);
  }
  return GuestMemory(p, size);
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), size_(o.size_) {}

GuestMemory::~GuestMemory() {
  if (p_ != nullptr) ::munmap(p_, size_);
}

}  // namespace vtime::vmm
