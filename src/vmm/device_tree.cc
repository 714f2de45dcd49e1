#include "vmm/device_tree.h"

#include <string>

extern "C" {
#include <libfdt.h>
}

#include "vmm/debug_print.h"
#include "vmm/layout.h"
#include "vmm/virtio_console.h"
#include "vtime/vmm/user_gic.h"

namespace vtime::vmm {
namespace {

constexpr std::uint32_t kGicPhandle = 1;
constexpr std::uint32_t kClockPhandle = 2;
// Interrupt specifier cells (the GIC binding): type, number, flags.
constexpr std::uint32_t kSpi = 0;
constexpr std::uint32_t kPpi = 1;
constexpr std::uint32_t kLevelHigh = 4;

// Builds the tree with libfdt's sequential-write API; `ok` collects the first
// libfdt error so that the construction reads top to bottom.
class Writer {
 public:
  explicit Writer(std::size_t size) : buf_(size) { Check(fdt_create(buf_.data(), Size())); }
  void Check(int r) {
    if (r < 0 && err_ == 0) err_ = r;
  }
  void Begin(const std::string& name) { Check(fdt_begin_node(buf_.data(), name.c_str())); }
  void End() { Check(fdt_end_node(buf_.data())); }
  void Str(const char* name, const std::string& value) {
    Check(fdt_property(buf_.data(), name, value.c_str(), static_cast<int>(value.size() + 1)));
  }
  void StrList(const char* name, const std::vector<std::string>& values) {
    std::string joined;
    for (const auto& v : values) joined.append(v).push_back('\0');
    Check(fdt_property(buf_.data(), name, joined.data(), static_cast<int>(joined.size())));
  }
  void U32(const char* name, std::uint32_t v) { Check(fdt_property_u32(buf_.data(), name, v)); }
  void Cells(const char* name, const std::vector<std::uint32_t>& cells) {
    std::vector<fdt32_t> be;
    be.reserve(cells.size());
    for (std::uint32_t c : cells) be.push_back(cpu_to_fdt32(c));
    Check(
        fdt_property(buf_.data(), name, be.data(), static_cast<int>(be.size() * sizeof(fdt32_t))));
  }
  void Empty(const char* name) { Check(fdt_property(buf_.data(), name, nullptr, 0)); }
  void Reg64(const std::vector<std::uint64_t>& pairs) {
    std::vector<std::uint32_t> cells;
    for (std::uint64_t v : pairs) {
      cells.push_back(static_cast<std::uint32_t>(v >> 32));
      cells.push_back(static_cast<std::uint32_t>(v));
    }
    Cells("reg", cells);
  }
  int Finish() {
    Check(fdt_finish(buf_.data()));
    if (err_ == 0) Check(fdt_pack(buf_.data()));
    return err_;
  }
  std::vector<std::uint8_t> Take() {
    buf_.resize(fdt_totalsize(buf_.data()));
    return std::move(buf_);
  }
  int Size() const { return static_cast<int>(buf_.size()); }
  void* data() { return buf_.data(); }

 private:
  std::vector<std::uint8_t> buf_;
  int err_ = 0;
};

std::string Hexless(std::uint64_t v) {
  static const char* digits = "0123456789abcdef";
  if (v == 0) return "0";
  std::string s;
  while (v != 0) {
    s.insert(s.begin(), digits[v & 15]);
    v >>= 4;
  }
  return s;
}

}  // namespace

Result<std::vector<std::uint8_t>> BuildDeviceTree(const MachineDescription& m) {
  if (m.cpus == 0 || m.cpus > 255) {
    return Fail(ErrorCode::kInvalidArgument,
                "device tree: " + std::to_string(m.cpus) + " CPUs (1..255 supported)");
  }
  if (m.initrd && m.initrd->end < m.initrd->start) {
    return Fail(ErrorCode::kInvalidArgument, "device tree: the initrd ends before it starts");
  }
  for (int ppi : {m.vtimer_ppi, m.ptimer_ppi, m.hvtimer_ppi, m.hptimer_ppi}) {
    if (ppi < 16 || ppi > 31) {
      return Fail(ErrorCode::kInvalidArgument,
                  "device tree: timer interrupt " + std::to_string(ppi) + " is not a PPI (16..31)");
    }
  }
  Writer w(64 * 1024);
  w.Check(fdt_finish_reservemap(w.data()));
  w.Begin("");
  w.Str("compatible", "linux,dummy-virt");
  w.Str("model", "vtvmm (vtime reference VMM)");
  w.U32("#address-cells", 2);
  w.U32("#size-cells", 2);
  w.U32("interrupt-parent", kGicPhandle);

  w.Begin("chosen");
  w.Str("stdout-path", "/pl011@" + Hexless(layout::kUart));
  if (!m.bootargs.empty()) w.Str("bootargs", m.bootargs);
  if (m.initrd) {
    // Linux takes these as one or two cells; two cover all of RAM.
    w.Cells("linux,initrd-start", {static_cast<std::uint32_t>(m.initrd->start >> 32),
                                   static_cast<std::uint32_t>(m.initrd->start)});
    w.Cells("linux,initrd-end", {static_cast<std::uint32_t>(m.initrd->end >> 32),
                                 static_cast<std::uint32_t>(m.initrd->end)});
  }
  w.End();

  w.Begin("memory@" + Hexless(layout::kRam));
  w.Str("device_type", "memory");
  w.Reg64({layout::kRam, m.ram_size});
  w.End();

  w.Begin("cpus");
  w.U32("#address-cells", 1);
  w.U32("#size-cells", 0);
  for (unsigned i = 0; i < m.cpus; ++i) {
    w.Begin("cpu@" + Hexless(i));
    w.Str("device_type", "cpu");
    w.Str("compatible", "arm,arm-v8");
    w.U32("reg", i);
    w.Str("enable-method", "psci");
    w.End();
  }
  w.End();

  w.Begin("psci");
  w.StrList("compatible", {"arm,psci-0.2", "arm,psci"});
  w.Str("method", "hvc");
  w.End();

  // GICv2 PPI specifiers carry a CPU mask in flags[15:8]; GICv3's do not.
  std::uint32_t ppi_flags = kLevelHigh;
  w.Begin("intc@" + Hexless(layout::kGicDist));
  if (m.irqchip == IrqChip::kKernel || m.user_gic_v3) {
    w.Str("compatible", "arm,gic-v3");
    w.Reg64({layout::kGicDist, layout::kGicDistSizeV3, layout::kGicRedist,
             layout::kGicRedistStride * static_cast<std::uint64_t>(m.cpus)});
  } else {
    w.StrList("compatible", {"arm,cortex-a15-gic"});
    w.Reg64({layout::kGicDist, UserGic::kDistSize, layout::kGicCpu, UserGic::kCpuSize});
    const unsigned mask_cpus = m.cpus > 8 ? 8 : m.cpus;
    ppi_flags |= ((1U << mask_cpus) - 1) << 8;
  }
  w.U32("#interrupt-cells", 3);
  w.Empty("interrupt-controller");
  w.U32("#address-cells", 2);
  w.U32("#size-cells", 2);
  w.U32("phandle", kGicPhandle);
  w.End();

  w.Begin("timer");
  w.StrList("compatible", {"arm,armv8-timer", "arm,armv7-timer"});
  // Order fixed by the binding: secure physical, non-secure physical,
  // virtual, hypervisor physical, hypervisor virtual. PPI numbers in
  // specifiers count from INTID 16. A guest has no secure timer, but the
  // binding needs the slot: it names INTID 29, as QEMU's virt does.
  const auto ppi = [](int intid) { return static_cast<std::uint32_t>(intid - 16); };
  w.Cells("interrupts",
          {kPpi, 13, ppi_flags, kPpi, ppi(m.ptimer_ppi), ppi_flags, kPpi, ppi(m.vtimer_ppi),
           ppi_flags, kPpi, ppi(m.hptimer_ppi), ppi_flags, kPpi, ppi(m.hvtimer_ppi), ppi_flags});
  w.Empty("always-on");
  w.End();

  w.Begin("apb-pclk");
  w.Str("compatible", "fixed-clock");
  w.U32("#clock-cells", 0);
  w.U32("clock-frequency", 24000000);
  w.Str("clock-output-names", "clk24mhz");
  w.U32("phandle", kClockPhandle);
  w.End();

  w.Begin("pl011@" + Hexless(layout::kUart));
  w.StrList("compatible", {"arm,pl011", "arm,primecell"});
  w.Reg64({layout::kUart, layout::kUartSize});
  w.Cells("interrupts", {kSpi, m.uart_spi, kLevelHigh});
  w.Cells("clocks", {kClockPhandle, kClockPhandle});
  w.StrList("clock-names", {"uartclk", "apb_pclk"});
  w.End();

  // Linux's AMBA bus reads the PrimeCell ID registers before it binds a
  // driver, and only once it has the bus clock named apb_pclk.
  w.Begin("pl031@" + Hexless(layout::kRtc));
  w.StrList("compatible", {"arm,pl031", "arm,primecell"});
  w.Reg64({layout::kRtc, layout::kRtcSize});
  w.Cells("interrupts", {kSpi, m.rtc_spi, kLevelHigh});
  w.Cells("clocks", {kClockPhandle});
  w.StrList("clock-names", {"apb_pclk"});
  w.End();

  if (m.virtio_console) {
    w.Begin("virtio_mmio@" + Hexless(layout::kVirtioConsole));
    w.Str("compatible", "virtio,mmio");
    w.Reg64({layout::kVirtioConsole, VirtioConsole::kSize});
    w.Cells("interrupts", {kSpi, m.virtio_console_spi, kLevelHigh});
    w.Empty("dma-coherent");
    w.End();
  }

  w.Begin("test-exit@" + Hexless(layout::kTestExit));
  w.Str("compatible", "vtime,test-exit");
  w.Reg64({layout::kTestExit, layout::kTestExitSize});
  w.End();

  w.Begin("debug-print@" + Hexless(layout::kDebugPrint));
  w.Str("compatible", "vtime,debug-print");
  w.Reg64({layout::kDebugPrint, DebugPrint::kSize});
  w.End();

  w.Begin("trace-marker@" + Hexless(layout::kTraceMarker));
  w.Str("compatible", "vtime,trace-marker");
  w.Reg64({layout::kTraceMarker, layout::kTraceMarkerSize});
  w.End();

  w.End();
  if (const int err = w.Finish(); err < 0) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string("device tree: libfdt error: ") + fdt_strerror(err));
  }
  return w.Take();
}

}  // namespace vtime::vmm
