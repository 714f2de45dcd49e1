// The KVM backend against real KVM (the arm64 lab, or an arm64 host): the
// counter-offset rules as the kernel applies them, PV-time attribute errors,
// timer PPIs, and a guest's view of its counters under a VM offset.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "vtime/backend/kvm.h"

namespace vtime::kvm {
namespace {

constexpr std::uint64_t kRamBase = 0x40000000;
constexpr std::uint64_t kRamSize = 2 << 20;
constexpr std::uint64_t kMmioProbe = 0x09000000;  // unmapped: stores exit to us

// The lab host's own counter. Linux runs at EL2 with E2H and TGE set, where
// the virtual offset is 0: CNTVCT_EL0 is the physical count KVM offsets.
std::uint64_t HostCounter() {
  std::uint64_t v;
  asm volatile("isb; mrs %0, cntvct_el0" : "=r"(v)::"memory");
  return v;
}

struct Lab {
  System system;
  Vm vm;
  void* ram;
  Lab(System s, Vm v, void* r) : system(std::move(s)), vm(std::move(v)), ram(r) {}
};

Lab MakeVm() {
  auto system = System::Open();
  EXPECT_TRUE(system.has_value()) << system.error().Message();
  auto vm = system->CreateVm();
  EXPECT_TRUE(vm.has_value()) << vm.error().Message();
  void* ram = ::mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_NE(ram, MAP_FAILED);
  auto mapped = vm->SetUserMemoryRegion(0, kRamBase, kRamSize, ram);
  EXPECT_TRUE(mapped.has_value()) << mapped.error().Message();
  return Lab(std::move(*system), std::move(*vm), ram);
}

Vcpu MakeVcpu(Vm& vm, unsigned index) {
  auto vcpu = vm.CreateVcpu(index);
  EXPECT_TRUE(vcpu.has_value()) << vcpu.error().Message();
  auto init = vm.PreferredTarget();
  EXPECT_TRUE(init.has_value());
  init->Set(feature::kPsci02);
  auto ok = vcpu->Init(*init);
  EXPECT_TRUE(ok.has_value()) << ok.error().Message();
  return std::move(*vcpu);
}

TEST(KvmBackend, ProbeFindsWhatVtimeNeeds) {
  auto system = System::Open();
  ASSERT_TRUE(system.has_value()) << system.error().Message();
  auto caps = system->Probe();
  ASSERT_TRUE(caps.has_value()) << caps.error().Message();
  std::printf("%s", caps->Describe().c_str());
  EXPECT_EQ(caps->api_version, 12);
  EXPECT_TRUE(caps->one_reg);
  EXPECT_TRUE(caps->counter_offset);
  EXPECT_GE(caps->user_irq, 1);
  EXPECT_TRUE(caps->steal_time);
  EXPECT_TRUE(caps->psci_0_2);
}

TEST(KvmBackend, BadDescriptorErrorsCarryErrnoAndContext) {
  System bogus{Fd(-1)};
  auto version = bogus.GetApiVersion();
  ASSERT_FALSE(version.has_value());
  EXPECT_EQ(version.error().sys_errno, EBADF);
  EXPECT_EQ(version.error().code, ErrorCode::kSystem);
  EXPECT_NE(version.error().Message().find("KVM_GET_API_VERSION"), std::string::npos);
}

TEST(KvmBackend, MissingDeviceSaysSo) {
  auto system = System::Open("/dev/no-such-kvm");
  ASSERT_FALSE(system.has_value());
  EXPECT_EQ(system.error().sys_errno, ENOENT);
  EXPECT_NE(system.error().Message().find("/dev/no-such-kvm"), std::string::npos);
}

TEST(KvmBackend, LegacyCounterWriteMovesTheVmOffset) {
  Lab lab = MakeVm();
  Vcpu vcpu0 = MakeVcpu(lab.vm, 0);
  Vcpu vcpu1 = MakeVcpu(lab.vm, 1);
  constexpr std::uint64_t kValue = 1ULL << 40;
  ASSERT_TRUE(vcpu0.SetOneReg(reg::kCntvct, kValue).has_value());
  // VM-wide: vCPU 1 reads it too (plus the time that passed).
  auto read = vcpu1.GetOneReg(reg::kCntvct);
  ASSERT_TRUE(read.has_value()) << read.error().Message();
  EXPECT_GE(*read, kValue);
  EXPECT_LT(*read - kValue, 1'000'000'000ULL);  // within a second at 1 GHz
}

TEST(KvmBackend, CounterWritesAreIgnoredOnceTheVmOffsetIsSet) {
  Lab lab = MakeVm();
  Vcpu vcpu = MakeVcpu(lab.vm, 0);
  const std::uint64_t offset = HostCounter() - (1ULL << 36);  // guest near 2^36
  ASSERT_TRUE(lab.vm.SetCounterOffset(offset).has_value());
  ASSERT_TRUE(vcpu.SetOneReg(reg::kCntvct, 5).has_value());  // accepted ...
  ASSERT_TRUE(vcpu.SetOneReg(reg::kCntpct, 5).has_value());
  const std::uint64_t h0 = HostCounter();
  auto v = vcpu.GetOneReg(reg::kCntvct);
  auto p = vcpu.GetOneReg(reg::kCntpct);
  const std::uint64_t h1 = HostCounter();
  ASSERT_TRUE(v.has_value() && p.has_value());
  // ... and ignored: both counters are host - offset.
  EXPECT_GE(*v, h0 - offset);
  EXPECT_LE(*v, h1 - offset);
  EXPECT_GE(*p, h0 - offset);
  EXPECT_LE(*p, h1 - offset);
}

TEST(KvmBackend, SetCounterOffsetAcceptsAnyValue) {
  // vtime always sends reserved = 0, so every offset value is accepted.
  Lab lab = MakeVm();
  EXPECT_TRUE(lab.vm.SetCounterOffset(~0ULL).has_value());
  EXPECT_TRUE(lab.vm.SetCounterOffset(0).has_value());
}

TEST(KvmBackend, PvtimeIpaRulesMatchTheKernel) {
  Lab lab = MakeVm();
  Vcpu vcpu = MakeVcpu(lab.vm, 0);
  auto has = vcpu.HasAttr(vcpu_attr::kPvtimeCtrl, vcpu_attr::kPvtimeIpa);
  ASSERT_TRUE(has.has_value());
  ASSERT_TRUE(*has);
  auto misaligned = vcpu.SetPvtimeIpa(kRamBase + kRamSize - 4096 + 8);
  ASSERT_FALSE(misaligned.has_value());
  EXPECT_EQ(misaligned.error().sys_errno, EINVAL);
  auto outside = vcpu.SetPvtimeIpa(0x100000000ULL);  // no memslot there
  ASSERT_FALSE(outside.has_value());
  EXPECT_EQ(outside.error().sys_errno, EINVAL);
  const std::uint64_t ipa = kRamBase + kRamSize - 4096;
  ASSERT_TRUE(vcpu.SetPvtimeIpa(ipa).has_value());
  auto got = vcpu.GetPvtimeIpa();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, ipa);
  auto again = vcpu.SetPvtimeIpa(ipa);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().sys_errno, EEXIST);
  EXPECT_NE(again.error().Message().find("vCPU 0"), std::string::npos);
}

TEST(KvmBackend, TimerPpisDefaultAndNeedAVgicToChange) {
  Lab lab = MakeVm();
  Vcpu vcpu = MakeVcpu(lab.vm, 0);
  auto vtimer = vcpu.GetTimerPpi(vcpu_attr::kTimerIrqVtimer);
  auto ptimer = vcpu.GetTimerPpi(vcpu_attr::kTimerIrqPtimer);
  ASSERT_TRUE(vtimer.has_value() && ptimer.has_value());
  EXPECT_EQ(*vtimer, 27);
  EXPECT_EQ(*ptimer, 30);
  auto no_vgic = vcpu.SetTimerPpi(vcpu_attr::kTimerIrqVtimer, 20);
  ASSERT_FALSE(no_vgic.has_value());
  EXPECT_EQ(no_vgic.error().sys_errno, EINVAL);
  auto not_a_ppi = vcpu.SetTimerPpi(vcpu_attr::kTimerIrqVtimer, 40);
  ASSERT_FALSE(not_a_ppi.has_value());
  EXPECT_EQ(not_a_ppi.error().code, ErrorCode::kOutOfRange);
}

TEST(KvmBackend, TimerPpisCanBeMovedWithAVgic) {
  Lab lab = MakeVm();
  Vcpu vcpu = MakeVcpu(lab.vm, 0);
  auto gic = lab.vm.CreateVgicV3(0x08000000, 0x080A0000, 64);
  ASSERT_TRUE(gic.has_value()) << gic.error().Message();
  ASSERT_TRUE(vcpu.SetTimerPpi(vcpu_attr::kTimerIrqVtimer, 20).has_value());
  auto got = vcpu.GetTimerPpi(vcpu_attr::kTimerIrqVtimer);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, 20);
}

TEST(KvmBackend, GuestCountersAreHostMinusTheVmOffset) {
  Lab lab = MakeVm();
  Vcpu vcpu = MakeVcpu(lab.vm, 0);
  // isb; mrs x0, cntvct_el0; mrs x1, cntpct_el0; str x0, [x2]; str x1, [x2]; b .
  constexpr std::uint32_t kCode[] = {0xd5033fdf, 0xd53be040, 0xd53be021,
                                     0xf9000040, 0xf9000041, 0x14000000};
  std::memcpy(lab.ram, kCode, sizeof kCode);
  ASSERT_TRUE(vcpu.SetOneReg(reg::Core(reg::kPc), kRamBase).has_value());
  ASSERT_TRUE(vcpu.SetOneReg(reg::Core(2), kMmioProbe).has_value());
  const std::uint64_t offset = HostCounter() - 1'000'000;  // the guest starts near 1 ms
  ASSERT_TRUE(lab.vm.SetCounterOffset(offset).has_value());

  std::uint64_t seen[2] = {};
  const std::uint64_t h0 = HostCounter();
  for (std::uint64_t& value : seen) {
    auto exit = vcpu.Run();
    ASSERT_TRUE(exit.has_value()) << exit.error().Message();
    ASSERT_EQ(exit->kind, ExitKind::kMmio) << "exit reason " << exit->raw_reason;
    ASSERT_TRUE(exit->mmio_write);
    ASSERT_EQ(exit->mmio_addr, kMmioProbe);
    std::memcpy(&value, exit->mmio_data, sizeof value);
  }
  const std::uint64_t h1 = HostCounter();
  std::printf("guest CNTVCT %llu CNTPCT %llu, host window [%llu, %llu] minus offset, %llu ticks\n",
              static_cast<unsigned long long>(seen[0]), static_cast<unsigned long long>(seen[1]),
              static_cast<unsigned long long>(h0 - offset),
              static_cast<unsigned long long>(h1 - offset),
              static_cast<unsigned long long>(h1 - h0));
  EXPECT_GE(seen[0], h0 - offset);
  EXPECT_LE(seen[0], h1 - offset);
  EXPECT_GE(seen[1], seen[0]);
  EXPECT_LE(seen[1], h1 - offset);
}

}  // namespace
}  // namespace vtime::kvm
