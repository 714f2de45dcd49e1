#include "vmm/device_tree.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

extern "C" {
#include <libfdt.h>
}

#include "vmm/layout.h"

namespace vtime::vmm {
namespace {

std::vector<std::uint32_t> Cells(const std::vector<std::uint8_t>& dtb, const char* path,
                                 const char* prop) {
  const int node = fdt_path_offset(dtb.data(), path);
  EXPECT_GE(node, 0) << path;
  int len = 0;
  const auto* p = static_cast<const fdt32_t*>(fdt_getprop(dtb.data(), node, prop, &len));
  std::vector<std::uint32_t> out;
  if (p == nullptr) return out;
  for (int i = 0; i < len / 4; ++i) out.push_back(fdt32_to_cpu(p[i]));
  return out;
}

std::string Str(const std::vector<std::uint8_t>& dtb, const char* path, const char* prop) {
  const int node = fdt_path_offset(dtb.data(), path);
  if (node < 0) return "";
  const char* s = static_cast<const char*>(fdt_getprop(dtb.data(), node, prop, nullptr));
  return s == nullptr ? "" : s;
}

TEST(DeviceTree, DescribesQemuVirtLayoutWithGicV3) {
  MachineDescription m;
  m.cpus = 2;
  m.ram_size = 128ULL << 20;
  auto dtb = BuildDeviceTree(m);
  ASSERT_TRUE(dtb.has_value()) << dtb.error().Message();
  ASSERT_EQ(fdt_check_header(dtb->data()), 0);
  EXPECT_EQ(Cells(*dtb, "/memory@40000000", "reg"),
            (std::vector<std::uint32_t>{0, 0x40000000, 0, 128U << 20}));
  EXPECT_EQ(Str(*dtb, "/intc@8000000", "compatible"), "arm,gic-v3");
  EXPECT_EQ(Cells(*dtb, "/intc@8000000", "reg"),
            (std::vector<std::uint32_t>{0, 0x08000000, 0, 0x10000, 0, 0x080A0000, 0, 0x40000}));
  EXPECT_EQ(Str(*dtb, "/psci", "method"), "hvc");
  EXPECT_EQ(Str(*dtb, "/pl011@9000000", "compatible"), "arm,pl011");
  EXPECT_EQ(Str(*dtb, "/chosen", "stdout-path"), "/pl011@9000000");
  EXPECT_GE(fdt_path_offset(dtb->data(), "/cpus/cpu@1"), 0);
  EXPECT_LT(fdt_path_offset(dtb->data(), "/cpus/cpu@2"), 0);
}

TEST(DeviceTree, TimerInterruptsFollowTheBindingOrderAndThePpisGiven) {
  MachineDescription m;
  m.vtimer_ppi = 20;
  auto dtb = BuildDeviceTree(m);
  ASSERT_TRUE(dtb.has_value());
  const auto irqs = Cells(*dtb, "/timer", "interrupts");
  ASSERT_EQ(irqs.size(), 15U);
  // secure phys, phys, virt, hyp phys, hyp virt; PPI numbers from INTID 16.
  EXPECT_EQ(irqs[1], 13U);
  EXPECT_EQ(irqs[4], 30U - 16);
  EXPECT_EQ(irqs[7], 20U - 16);
  EXPECT_EQ(irqs[10], 26U - 16);
  EXPECT_EQ(irqs[13], 28U - 16);
  EXPECT_EQ(irqs[2], 4U);  // level high, no CPU mask with GICv3
}

TEST(DeviceTree, UserIrqchipDescribesAGicV2WithCpuMasks) {
  MachineDescription m;
  m.cpus = 3;
  m.irqchip = IrqChip::kUser;
  auto dtb = BuildDeviceTree(m);
  ASSERT_TRUE(dtb.has_value());
  EXPECT_EQ(Str(*dtb, "/intc@8000000", "compatible"), "arm,cortex-a15-gic");
  EXPECT_EQ(Cells(*dtb, "/intc@8000000", "reg"),
            (std::vector<std::uint32_t>{0, 0x08000000, 0, 0x1000, 0, 0x08010000, 0, 0x2000}));
  EXPECT_EQ(Cells(*dtb, "/timer", "interrupts")[2], 0x704U);
}

TEST(DeviceTree, DescribesTheTestFinisherAndTheBulkPrintDevice) {
  auto dtb = BuildDeviceTree(MachineDescription{});
  ASSERT_TRUE(dtb.has_value());
  EXPECT_EQ(Str(*dtb, "/test-exit@90c0000", "compatible"), "vtime,test-exit");
  EXPECT_EQ(Str(*dtb, "/debug-print@90d0000", "compatible"), "vtime,debug-print");
}

TEST(DeviceTree, DescribesTheTraceMarkerSoThatNoDriverClaimsItsPage) {
  auto dtb = BuildDeviceTree(MachineDescription{});
  ASSERT_TRUE(dtb.has_value());
  EXPECT_EQ(Str(*dtb, "/trace-marker@90e0000", "compatible"), "vtime,trace-marker");
  EXPECT_EQ(Cells(*dtb, "/trace-marker@90e0000", "reg"),
            (std::vector<std::uint32_t>{0, 0x090e0000, 0, 0x1000}));
}

TEST(DeviceTree, ChosenCarriesBootargsAndTheInitrdRangeForLinux) {
  MachineDescription m;
  m.bootargs = "console=ttyAMA0 quiet";
  m.initrd = MachineDescription::Range{0x4fe00000, 0x4fe12345};
  auto dtb = BuildDeviceTree(m);
  ASSERT_TRUE(dtb.has_value()) << dtb.error().Message();
  EXPECT_EQ(Str(*dtb, "/chosen", "bootargs"), "console=ttyAMA0 quiet");
  EXPECT_EQ(Cells(*dtb, "/chosen", "linux,initrd-start"),
            (std::vector<std::uint32_t>{0, 0x4fe00000}));
  EXPECT_EQ(Cells(*dtb, "/chosen", "linux,initrd-end"),
            (std::vector<std::uint32_t>{0, 0x4fe12345}));
  // stdout-path names a node that exists: the console Linux picks.
  EXPECT_GE(fdt_path_offset(dtb->data(), Str(*dtb, "/chosen", "stdout-path").c_str()), 0);
}

TEST(DeviceTree, WithoutBootargsOrInitrdChosenHasNeither) {
  auto dtb = BuildDeviceTree(MachineDescription{});
  ASSERT_TRUE(dtb.has_value());
  const int chosen = fdt_path_offset(dtb->data(), "/chosen");
  EXPECT_EQ(fdt_getprop(dtb->data(), chosen, "bootargs", nullptr), nullptr);
  EXPECT_EQ(fdt_getprop(dtb->data(), chosen, "linux,initrd-start", nullptr), nullptr);
}

TEST(DeviceTree, DescribesThePl031AsAPrimecellWithItsBusClock) {
  auto dtb = BuildDeviceTree(MachineDescription{});
  ASSERT_TRUE(dtb.has_value());
  const char* rtc = "/pl031@9010000";
  const int node = fdt_path_offset(dtb->data(), rtc);
  ASSERT_GE(node, 0);
  EXPECT_EQ(fdt_stringlist_search(dtb->data(), node, "compatible", "arm,pl031"), 0);
  EXPECT_EQ(fdt_stringlist_search(dtb->data(), node, "compatible", "arm,primecell"), 1);
  EXPECT_EQ(Cells(*dtb, rtc, "reg"), (std::vector<std::uint32_t>{0, 0x09010000, 0, 0x1000}));
  EXPECT_EQ(Cells(*dtb, rtc, "interrupts"), (std::vector<std::uint32_t>{0, 2, 4}));  // SPI 2
  EXPECT_EQ(Str(*dtb, rtc, "clock-names"), "apb_pclk");
  // The clock it names is the fixed clock the PL011 uses.
  const auto clocks = Cells(*dtb, rtc, "clocks");
  ASSERT_EQ(clocks.size(), 1U);
  EXPECT_EQ(fdt_node_offset_by_phandle(dtb->data(), clocks[0]),
            fdt_path_offset(dtb->data(), "/apb-pclk"));
  EXPECT_EQ(Cells(*dtb, "/pl011@9000000", "clocks")[1], clocks[0]);
}

TEST(DeviceTree, DescribesTheVirtioConsoleOnlyWhenTheMachineHasOne) {
  auto plain = BuildDeviceTree(MachineDescription{});
  ASSERT_TRUE(plain.has_value());
  EXPECT_LT(fdt_path_offset(plain->data(), "/virtio_mmio@a000000"), 0);
  MachineDescription m;
  m.virtio_console = true;
  auto dtb = BuildDeviceTree(m);
  ASSERT_TRUE(dtb.has_value());
  const char* vc = "/virtio_mmio@a000000";
  const int node = fdt_path_offset(dtb->data(), vc);
  ASSERT_GE(node, 0);
  EXPECT_EQ(Str(*dtb, vc, "compatible"), "virtio,mmio");
  EXPECT_EQ(Cells(*dtb, vc, "reg"), (std::vector<std::uint32_t>{0, 0x0a000000, 0, 0x200}));
  EXPECT_EQ(Cells(*dtb, vc, "interrupts"), (std::vector<std::uint32_t>{0, 16, 4}));  // SPI 16
  EXPECT_NE(fdt_getprop(dtb->data(), node, "dma-coherent", nullptr), nullptr);
}

TEST(DeviceTree, RefusesImpossibleDescriptions) {
  MachineDescription none;
  none.cpus = 0;
  EXPECT_FALSE(BuildDeviceTree(none).has_value());
  MachineDescription bad_ppi;
  bad_ppi.ptimer_ppi = 40;
  auto r = BuildDeviceTree(bad_ppi);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().context.find("not a PPI"), std::string::npos);
  MachineDescription backwards;
  backwards.initrd = MachineDescription::Range{0x2000, 0x1000};
  EXPECT_FALSE(BuildDeviceTree(backwards).has_value());
}

}  // namespace
}  // namespace vtime::vmm
