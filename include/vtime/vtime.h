/*
 * vtime.h: the C API of vtime, for virtual machine monitors written in C or
 * reaching vtime through a foreign-function interface (Rust, Go, ...).
 *
 * This header is C11 and C++ (any standard from C++11): it uses no C++ type
 * and no compiler extension a C11 compiler lacks. It is the whole interface of
 * libvtime.so.0; the C++ headers beside it are vtime's internals and are not
 * part of the stable ABI.
 *
 * WHAT IS HERE
 *   - the VM clock model: the VM-wide counter offsets and the rules that move
 *     them (vCPU creation, counter-value writes, the VM offset), and the
 *     guest's CNTVCT/CNTPCT for a host count                (vtime_clock_*)
 *   - one vCPU's timer registers, the emulation of a trapped counter or timer
 *     system-register access from its ESR_EL2 value, and the timers' next
 *     deadline and output lines                             (vtime_vcpu_*)
 *   - saved guest time: build, inspect, validate, encode, decode and a JSON
 *     view of the binary format                             (vtime_state_*)
 *   - the migration policies, freeze and wallclock, as a resume plan
 *                                        (vtime_policy_*, vtime_plan_resume)
 *   - for a VMM that lets vtime drive KVM (Linux arm64): the capture of guest
 *     time at a pause and its restore with a policy, on the VM and vCPU file
 *     descriptors the VMM already owns                     (vtime_kvm_*)
 * Everything but vtime_kvm_* is pure: no function reads a clock, opens a
 * file or issues a system call. "Now" always comes in as an argument (a host
 * count, a wall clock in nanoseconds) read by the caller. vtime_kvm_* issue
 * KVM ioctls on the descriptors they are given and read the host's counter
 * and CLOCK_REALTIME; they open, close and run nothing.
 *
 * CONVENTIONS
 *   Errors. Every function that can fail returns a vtime_status; VTIME_OK is
 *   0. On failure it also stores a one-line message in a thread-local buffer
 *   that vtime_last_error() returns: it names the function and says what was
 *   wrong. A successful call leaves the message alone, so the message always
 *   belongs to the last call on this thread that failed. vtime_status_name()
 *   gives a fixed name for a code. Functions that cannot fail return their
 *   value directly. No C++ exception ever leaves the library.
 *
 *   Ownership. Objects are opaque handles created by a vtime_*_create (or
 *   vtime_state_decode) function and owned by the caller until it passes them
 *   to the matching vtime_*_destroy, which accepts NULL. vtime never keeps a
 *   pointer the caller passed beyond the call.
 *
 *   Handles. A NULL handle, or a pointer that is not a live handle of the
 *   expected kind (a vtime_state where a vtime_clock is wanted, say), is
 *   refused with VTIME_ERR_BAD_HANDLE: every handle carries a type tag that
 *   each call checks, and destroy clears it. (The check reads the first 8
 *   bytes the pointer points at, so a stray pointer must at least point at
 *   8 readable bytes.) Using a handle after destroying it remains undefined
 *   behaviour: the memory is gone.
 *
 *   Buffers. Variable-size output goes into a caller-owned buffer described
 *   by a pointer and a size_t *size: on entry *size is the buffer's capacity
 *   in bytes (the buffer may be NULL when *size is 0); on VTIME_OK *size is
 *   the number of bytes written; on VTIME_ERR_BUFFER_TOO_SMALL *size is the
 *   number of bytes needed and the buffer is untouched. Calling once with
 *   *size = 0 asks for the size.
 *
 *   Enumerations. A parameter or struct field that takes an enumerator is a
 *   uint32_t (the comment names the enumeration), never the enum type: any
 *   value a caller passes is then defined behaviour on both sides of the
 *   boundary, and one the enumeration lacks is refused with
 *   VTIME_ERR_INVALID_ARGUMENT. Outputs of an enumeration type hold one of
 *   its enumerators.
 *
 *   Structs. Every struct here has a fixed layout of fixed-width fields and
 *   is part of the ABI: a field is never added to one within an ABI
 *   version; a new need gets a new struct and a new function. Fields named
 *   "reserved" are written as 0 by vtime and ignored on input.
 *
 *   Flags. Sets of options are uint32_t bit masks; a bit this version does
 *   not define is refused with VTIME_ERR_INVALID_ARGUMENT, so that a later
 *   version can give it a meaning safely.
 *
 *   Threads. A handle may be used by one thread at a time; different handles
 *   may be used concurrently. Functions that take a handle as const only
 *   read it and may run concurrently with each other.
 *
 *   Counter arithmetic is modulo 2^64, as the architecture defines it.
 *
 * VERSIONS
 *   The library's soname is libvtime.so.0 while vtime is 0.x. The symbols of
 *   0.1 are bound to the version node VTIME_0, those added in 0.2 (the
 *   vtime_kvm_* functions) to VTIME_0.2. A change that breaks this ABI gets
 *   a new soname and a new node; additions get a new node beside the old
 *   ones. VTIME_VERSION_* are the version of this header; vtime_version()
 *   is the version of the library actually loaded.
 */
#ifndef VTIME_VTIME_H_
#define VTIME_VTIME_H_

#include <stddef.h>
#include <stdint.h>

/** The version of this header (major, minor, patch). */
#define VTIME_VERSION_MAJOR 0
#define VTIME_VERSION_MINOR 2
#define VTIME_VERSION_PATCH 0
/** One number for a version: major << 16 | minor << 8 | patch, as an
 *  unsigned int (no cast, so that C++ code built with -Wold-style-cast can
 *  use it). */
#define VTIME_MAKE_VERSION(major, minor, patch) ((major)*0x10000u + (minor)*0x100u + (patch)*1u)
/** This header's version as one number. */
#define VTIME_VERSION \
  VTIME_MAKE_VERSION(VTIME_VERSION_MAJOR, VTIME_VERSION_MINOR, VTIME_VERSION_PATCH)

#if defined(__GNUC__) || defined(__clang__)
#define VTIME_API __attribute__((visibility("default")))
#else
#define VTIME_API
#endif

#ifdef __cplusplus
#define VTIME_NOEXCEPT noexcept
extern "C" {
#else
#define VTIME_NOEXCEPT
#endif

/* ---- versions and errors ------------------------------------------------ */

/** What a call did. VTIME_OK is 0; every other value is a failure. */
typedef enum vtime_status {
  VTIME_OK = 0,
  /** A value the caller passed is not acceptable (a NULL pointer, an unknown
   *  flag or enumerator). */
  VTIME_ERR_INVALID_ARGUMENT = 1,
  /** A value is well formed but outside what is allowed (an index). */
  VTIME_ERR_OUT_OF_RANGE = 2,
  /** The host, the vCPU or this version lacks the feature (a newer saved
   *  state format, a physical offset on a host without one). */
  VTIME_ERR_UNSUPPORTED = 3,
  /** An encoding cannot be decoded or a state breaks the format's rules
   *  (an ESR that is not a trapped MSR/MRS, a truncated or corrupted saved
   *  state). */
  VTIME_ERR_MALFORMED = 4,
  /** A one-shot setting was set before. */
  VTIME_ERR_ALREADY_EXISTS = 5,
  /** The operation conflicts with one in progress. */
  VTIME_ERR_BUSY = 6,
  /** The object is not in a state that allows this. */
  VTIME_ERR_BAD_STATE = 7,
  /** A system call failed (not returned by the pure functions of this
   *  version; reserved for the KVM part of the API). */
  VTIME_ERR_SYSTEM = 8,
  /** A handle is NULL or not a live handle of the kind the function takes. */
  VTIME_ERR_BAD_HANDLE = 9,
  /** A caller's buffer is too small; *size says how many bytes are needed. */
  VTIME_ERR_BUFFER_TOO_SMALL = 10,
  /** Memory ran out. */
  VTIME_ERR_NO_MEMORY = 11,
  /** A bug in vtime (an unexpected C++ exception was caught at the API
   *  boundary); please report it with the message. */
  VTIME_ERR_INTERNAL = 12
} vtime_status;

/** The version of the library that is loaded, as VTIME_MAKE_VERSION makes it.
 *  A program compiled against this header can compare it with VTIME_VERSION;
 *  the major numbers must match. */
VTIME_API uint32_t vtime_version(void) VTIME_NOEXCEPT;

/** The loaded library's version as "major.minor.patch" (static storage). */
VTIME_API const char *vtime_version_string(void) VTIME_NOEXCEPT;

/** A fixed lowercase name for a status ("malformed", "buffer too small"),
 *  in static storage; "unknown status" for a value not in vtime_status. */
VTIME_API const char *vtime_status_name(uint32_t status) VTIME_NOEXCEPT;

/** The message of the last call on this thread that failed: one line that
 *  names the function and says what was wrong and, where it can, what to do.
 *  "" if no call on this thread has failed. The pointer is to thread-local
 *  storage, valid until the thread's next failing vtime call or its exit. */
VTIME_API const char *vtime_last_error(void) VTIME_NOEXCEPT;

/* ---- the VM clock --------------------------------------------------------- */

/** The VM-wide virtual and physical counter offsets and the rules that move
 *  them (one per VM). Guest virtual count = host count - virtual offset;
 *  guest physical count = host count - physical offset. */
typedef struct vtime_clock vtime_clock;

/** Host features, for vtime_clock_create's host_flags. */
/** The VMM can set one VM-wide offset (KVM_CAP_COUNTER_OFFSET, Linux 6.4+). */
#define VTIME_HOST_VM_OFFSET_API (1u << 0)
/** The physical counter can be offset at all (Linux 6.4+); without it the
 *  guest's physical counter is the host's. */
#define VTIME_HOST_PHYSICAL_OFFSET (1u << 1)
/** FEAT_ECV CNTPOFF_EL2: the physical offset is applied in hardware; without
 *  it a non-zero physical offset is emulated by trapping. */
#define VTIME_HOST_ECV_CNTPOFF (1u << 2)
/** What KVM on Linux 6.4 and later offers on a host without FEAT_ECV. */
#define VTIME_HOST_LINUX_6_4 (VTIME_HOST_VM_OFFSET_API | VTIME_HOST_PHYSICAL_OFFSET)

/** The two counters a VMM can write by value. */
typedef enum vtime_counter {
  VTIME_COUNTER_VIRTUAL = 0, /**< CNTVCT */
  VTIME_COUNTER_PHYSICAL = 1 /**< CNTPCT */
} vtime_counter;

/** What a counter-value write did. */
typedef enum vtime_counter_write_effect {
  /** Legacy rule: the VM-wide offset moved so that the vCPU reads the value. */
  VTIME_COUNTER_WRITE_APPLIED = 0,
  /** The VMM has set the VM offset: the write succeeds and changes nothing. */
  VTIME_COUNTER_WRITE_IGNORED = 1
} vtime_counter_write_effect;

/** Which action last set an offset. */
typedef enum vtime_offset_source {
  VTIME_OFFSET_SOURCE_NONE = 0,          /**< nothing yet (no vCPU) */
  VTIME_OFFSET_SOURCE_VCPU_CREATION = 1, /**< legacy: a vCPU's creation reset it */
  VTIME_OFFSET_SOURCE_COUNTER_WRITE = 2, /**< legacy: a counter-value write */
  VTIME_OFFSET_SOURCE_VM_OFFSET = 3      /**< the VMM set the VM offset */
} vtime_offset_source;

/** How a non-zero physical offset reaches the guest. */
typedef enum vtime_physical_mechanism {
  VTIME_PHYSICAL_UNAVAILABLE = 0,     /**< the host cannot offset the physical counter */
  VTIME_PHYSICAL_CNTPOFF = 1,         /**< CNTPOFF_EL2 (FEAT_ECV) in hardware */
  VTIME_PHYSICAL_TRAP_AND_EMULATE = 2 /**< CNTPCT and CNTP_* trap and are emulated */
} vtime_physical_mechanism;

/** A snapshot of a clock's offsets and how they came to be. */
typedef struct vtime_clock_info {
  uint64_t virtual_offset;
  uint64_t physical_offset;
  uint32_t virtual_source;        /**< a vtime_offset_source */
  uint32_t physical_source;       /**< a vtime_offset_source */
  uint32_t physical_mechanism;    /**< a vtime_physical_mechanism */
  uint8_t vm_offset_set;          /**< 1 once vtime_clock_set_vm_offset succeeded */
  uint8_t physical_accesses_trap; /**< 1 when CNTPCT/CNTP_* must trap (no CNTPOFF,
                                       non-zero physical offset) */
  uint8_t reserved[2];
} vtime_clock_info;

/** Creates a clock for a VM whose counter runs at cntfrq_hz (CNTFRQ_EL0, not
 *  0) on a host with host_flags (VTIME_HOST_*). Both offsets start at 0.
 *  Errors: INVALID_ARGUMENT (out NULL, cntfrq_hz 0, unknown flag),
 *  NO_MEMORY. On failure *out is set to NULL when out is not NULL. */
VTIME_API vtime_status vtime_clock_create(uint64_t cntfrq_hz, uint32_t host_flags,
                                          vtime_clock **out) VTIME_NOEXCEPT;

/** Destroys a clock. NULL, or a pointer that is not a clock, is ignored. */
VTIME_API void vtime_clock_destroy(vtime_clock *clock) VTIME_NOEXCEPT;

/** A vCPU was created at host count host_count. Until the VMM sets the VM
 *  offset, this resets the virtual offset to host_count (the guest's virtual
 *  counter restarts at 0) and the physical offset to 0, as KVM does.
 *  Errors: BAD_HANDLE. */
VTIME_API vtime_status vtime_clock_on_vcpu_created(vtime_clock *clock,
                                                   uint64_t host_count) VTIME_NOEXCEPT;

/** The VMM writes a counter value (counter, a vtime_counter: CNTVCT or CNTPCT
 *  through KVM's ONE_REG) at
 *  host count host_count. Before the VM offset is set this moves the VM-wide
 *  offset so that the vCPU reads value at host_count (for a nested vCPU,
 *  nested_vcpu != 0, a virtual write moves the physical offset its virtual
 *  counter is built on); afterwards it is accepted and ignored. *effect (if
 *  effect is not NULL) says which. Errors: BAD_HANDLE, INVALID_ARGUMENT
 *  (unknown counter), UNSUPPORTED (a physical write on a host without
 *  VTIME_HOST_PHYSICAL_OFFSET). */
VTIME_API vtime_status vtime_clock_write_counter(vtime_clock *clock, uint32_t counter,
                                                 uint64_t value, uint64_t host_count,
                                                 int nested_vcpu,
                                                 vtime_counter_write_effect *effect) VTIME_NOEXCEPT;

/** The VMM sets the VM offset (KVM_ARM_SET_COUNTER_OFFSET): both offsets take
 *  offset (the physical one only with VTIME_HOST_PHYSICAL_OFFSET); from then
 *  on counter-value writes are ignored and vCPU creation resets nothing. It
 *  may be set again. Errors: BAD_HANDLE, UNSUPPORTED (no
 *  VTIME_HOST_VM_OFFSET_API: use counter-value writes). */
VTIME_API vtime_status vtime_clock_set_vm_offset(vtime_clock *clock,
                                                 uint64_t offset) VTIME_NOEXCEPT;

/** The clock's offsets, their sources and the physical-offset mechanism.
 *  Errors: BAD_HANDLE, INVALID_ARGUMENT (out NULL). */
VTIME_API vtime_status vtime_clock_get_info(const vtime_clock *clock,
                                            vtime_clock_info *out) VTIME_NOEXCEPT;

/** The counter frequency the clock was created with. Errors: BAD_HANDLE,
 *  INVALID_ARGUMENT (hz NULL). */
VTIME_API vtime_status vtime_clock_frequency(const vtime_clock *clock, uint64_t *hz) VTIME_NOEXCEPT;

/** The guest's EL1 virtual count (CNTVCT_EL0, outside nested virtualization)
 *  and physical count (CNTPCT_EL0) at host count host_count.
 *  Errors: BAD_HANDLE, INVALID_ARGUMENT (cntvct or cntpct NULL). */
VTIME_API vtime_status vtime_clock_counts(const vtime_clock *clock, uint64_t host_count,
                                          uint64_t *cntvct, uint64_t *cntpct) VTIME_NOEXCEPT;

/* ---- one vCPU's timers ---------------------------------------------------- */

/** The architectural timer state of one vCPU: the four timers' CTL and CVAL,
 *  CNTKCTL_EL1, and a guest hypervisor's CNTHCTL_EL2, CNTVOFF_EL2 and
 *  CNTPOFF_EL2. TVAL, ISTATUS and the output lines are derived, never
 *  stored. */
typedef struct vtime_vcpu vtime_vcpu;

/** vCPU features, for vtime_vcpu_create's feature_flags. */
/** Virtual EL2 (nested virtualization): four timers instead of two. */
#define VTIME_VCPU_EL2 (1u << 0)
/** FEAT_ECV: CNTPCTSS/CNTVCTSS and the ECV bits of CNTHCTL_EL2. */
#define VTIME_VCPU_ECV (1u << 1)
/** FEAT_ECV CNTPOFF_EL2 for the guest hypervisor (KVM hides it). */
#define VTIME_VCPU_ECV_CNTPOFF (1u << 2)

/** The four timers of a vCPU (the EL2 ones exist only with VTIME_VCPU_EL2). */
typedef enum vtime_timer {
  VTIME_TIMER_EL1_VIRTUAL = 0,  /**< CNTV_*_EL0 */
  VTIME_TIMER_EL1_PHYSICAL = 1, /**< CNTP_*_EL0 */
  VTIME_TIMER_EL2_VIRTUAL = 2,  /**< CNTHV_*_EL2 */
  VTIME_TIMER_EL2_PHYSICAL = 3  /**< CNTHP_*_EL2 */
} vtime_timer;

/** CNTx_CTL bits. */
#define VTIME_CTL_ENABLE (1u << 0)
#define VTIME_CTL_IMASK (1u << 1)
#define VTIME_CTL_ISTATUS (1u << 2) /**< read-only, derived */

/** The vCPU control and offset registers vtime keeps besides the timers. */
typedef enum vtime_vcpu_reg {
  VTIME_VCPU_REG_CNTKCTL_EL1 = 0,
  VTIME_VCPU_REG_CNTHCTL_EL2 = 1, /**< VTIME_VCPU_EL2 only */
  VTIME_VCPU_REG_CNTVOFF_EL2 = 2, /**< VTIME_VCPU_EL2 only */
  VTIME_VCPU_REG_CNTPOFF_EL2 = 3  /**< VTIME_VCPU_EL2 with VTIME_VCPU_ECV_CNTPOFF only */
} vtime_vcpu_reg;

/** Creates a vCPU with feature_flags (VTIME_VCPU_*), every register at its
 *  architectural reset (timers disabled, CVAL 0). Errors: INVALID_ARGUMENT
 *  (out NULL, unknown flag), NO_MEMORY. On failure *out is set to NULL when
 *  out is not NULL. */
VTIME_API vtime_status vtime_vcpu_create(uint32_t feature_flags, vtime_vcpu **out) VTIME_NOEXCEPT;

/** Destroys a vCPU. NULL, or a pointer that is not a vCPU, is ignored. */
VTIME_API void vtime_vcpu_destroy(vtime_vcpu *vcpu) VTIME_NOEXCEPT;

/** Architectural reset of every timer and control register (the features
 *  stay). Errors: BAD_HANDLE. */
VTIME_API vtime_status vtime_vcpu_reset(vtime_vcpu *vcpu) VTIME_NOEXCEPT;

/** The stored CTL (ENABLE and IMASK only, never ISTATUS) and CVAL of timer
 *  (a vtime_timer).
 *  Errors: BAD_HANDLE, INVALID_ARGUMENT (unknown timer, ctl or cval NULL),
 *  UNSUPPORTED (an EL2 timer on a vCPU without VTIME_VCPU_EL2). */
VTIME_API vtime_status vtime_vcpu_get_timer(const vtime_vcpu *vcpu, uint32_t timer, uint64_t *ctl,
                                            uint64_t *cval) VTIME_NOEXCEPT;

/** Restores the CTL and CVAL of timer (a vtime_timer): a VMM's restore
 *  path (set the clock's
 *  offsets first, then the timers). Errors: BAD_HANDLE, INVALID_ARGUMENT
 *  (unknown timer; ctl with bits other than ENABLE and IMASK, since ISTATUS
 *  is derived), UNSUPPORTED (an EL2 timer without VTIME_VCPU_EL2). */
VTIME_API vtime_status vtime_vcpu_set_timer(vtime_vcpu *vcpu, uint32_t timer, uint64_t ctl,
                                            uint64_t cval) VTIME_NOEXCEPT;

/** Reads one of the vCPU's control or offset registers (reg, a
 *  vtime_vcpu_reg). Errors: BAD_HANDLE,
 *  INVALID_ARGUMENT (unknown register, value NULL), UNSUPPORTED (a register
 *  the vCPU's features do not have). */
VTIME_API vtime_status vtime_vcpu_get_reg(const vtime_vcpu *vcpu, uint32_t reg,
                                          uint64_t *value) VTIME_NOEXCEPT;

/** Restores one of the vCPU's control or offset registers (reg, a
 *  vtime_vcpu_reg). Errors:
 *  BAD_HANDLE, INVALID_ARGUMENT (unknown register; a CNTKCTL_EL1 or
 *  CNTHCTL_EL2 value with bits the vCPU's features do not define, which a
 *  guest's own write could never have stored), UNSUPPORTED (a register the
 *  vCPU's features do not have). */
VTIME_API vtime_status vtime_vcpu_set_reg(vtime_vcpu *vcpu, uint32_t reg,
                                          uint64_t value) VTIME_NOEXCEPT;

/** The earliest instant one of a vCPU's timer lines rises. */
typedef struct vtime_deadline {
  /** Ticks from the host count asked about; 0 when a line is high now. */
  uint64_t delta_ticks;
  /** delta_ticks at the clock's frequency in nanoseconds, rounded up so that
   *  a host timer armed for it never expires early; saturates at 2^64-1. */
  uint64_t delta_ns;
  /** The vtime_timer that fires first. */
  uint32_t timer;
  /** 1 when a deadline exists; 0 when no timer can fire without a register
   *  write (all disabled or masked), and then the other fields are 0. */
  uint32_t pending;
} vtime_deadline;

/** The vCPU's next timer deadline at host count host_count, with the offsets
 *  of clock (and the vCPU's own nested offsets). Only the timers that exist
 *  count: two, or four with VTIME_VCPU_EL2. Errors: BAD_HANDLE (vcpu or
 *  clock), INVALID_ARGUMENT (out NULL). */
VTIME_API vtime_status vtime_vcpu_next_deadline(const vtime_vcpu *vcpu, const vtime_clock *clock,
                                                uint64_t host_count,
                                                vtime_deadline *out) VTIME_NOEXCEPT;

/** The timer output lines (ENABLE && ISTATUS && !IMASK) at host_count: bit
 *  i of *lines is the line of vtime_timer i. Errors: BAD_HANDLE,
 *  INVALID_ARGUMENT (lines NULL). */
VTIME_API vtime_status vtime_vcpu_output_lines(const vtime_vcpu *vcpu, const vtime_clock *clock,
                                               uint64_t host_count, uint32_t *lines) VTIME_NOEXCEPT;

/* ---- trapped system-register accesses ------------------------------------ */

/** The counter and timer system registers vtime models. The EL02/EL12 forms
 *  are the aliases a VHE guest hypervisor uses to reach the EL1 timers. */
typedef enum vtime_sysreg {
  VTIME_SYSREG_CNTFRQ_EL0 = 0,
  VTIME_SYSREG_CNTPCT_EL0 = 1,
  VTIME_SYSREG_CNTVCT_EL0 = 2,
  VTIME_SYSREG_CNTPCTSS_EL0 = 3,
  VTIME_SYSREG_CNTVCTSS_EL0 = 4,
  VTIME_SYSREG_CNTKCTL_EL1 = 5,
  VTIME_SYSREG_CNTP_TVAL_EL0 = 6,
  VTIME_SYSREG_CNTP_CTL_EL0 = 7,
  VTIME_SYSREG_CNTP_CVAL_EL0 = 8,
  VTIME_SYSREG_CNTV_TVAL_EL0 = 9,
  VTIME_SYSREG_CNTV_CTL_EL0 = 10,
  VTIME_SYSREG_CNTV_CVAL_EL0 = 11,
  VTIME_SYSREG_CNTVOFF_EL2 = 12,
  VTIME_SYSREG_CNTPOFF_EL2 = 13,
  VTIME_SYSREG_CNTHCTL_EL2 = 14,
  VTIME_SYSREG_CNTHP_TVAL_EL2 = 15,
  VTIME_SYSREG_CNTHP_CTL_EL2 = 16,
  VTIME_SYSREG_CNTHP_CVAL_EL2 = 17,
  VTIME_SYSREG_CNTHV_TVAL_EL2 = 18,
  VTIME_SYSREG_CNTHV_CTL_EL2 = 19,
  VTIME_SYSREG_CNTHV_CVAL_EL2 = 20,
  VTIME_SYSREG_CNTKCTL_EL12 = 21,
  VTIME_SYSREG_CNTP_TVAL_EL02 = 22,
  VTIME_SYSREG_CNTP_CTL_EL02 = 23,
  VTIME_SYSREG_CNTP_CVAL_EL02 = 24,
  VTIME_SYSREG_CNTV_TVAL_EL02 = 25,
  VTIME_SYSREG_CNTV_CTL_EL02 = 26,
  VTIME_SYSREG_CNTV_CVAL_EL02 = 27,
  /** A well-formed encoding that is not a register vtime models. */
  VTIME_SYSREG_NONE = 255
} vtime_sysreg;

/** The Arm name of reg, a vtime_sysreg ("CNTV_CVAL_EL0"), in static storage; NULL for
 *  VTIME_SYSREG_NONE or a value not in vtime_sysreg. */
VTIME_API const char *vtime_sysreg_name(uint32_t reg) VTIME_NOEXCEPT;

/** One trapped MSR/MRS, decoded from ESR_EL2 (exception class 0x18). */
typedef struct vtime_sysreg_access {
  uint32_t sysreg;                 /**< a vtime_sysreg, VTIME_SYSREG_NONE if not a timer register */
  uint8_t op0, op1, crn, crm, op2; /**< the encoding as the syndrome gave it */
  uint8_t rt;                      /**< the general-purpose register Xt; 31 is XZR */
  uint8_t is_read;                 /**< 1 for MRS (a read), 0 for MSR */
  uint8_t reserved;
} vtime_sysreg_access;

/** Decodes an ESR_EL2 value. Errors: INVALID_ARGUMENT (out NULL), MALFORMED
 *  (exception class not 0x18, IL 0, or a RES0 bit set). */
VTIME_API vtime_status vtime_decode_trap(uint64_t esr, vtime_sysreg_access *out) VTIME_NOEXCEPT;

/** The ESR_EL2 value a trap of an access to reg (a vtime_sysreg) would report (EC 0x18,
 *  IL 1), for tests and tools. Errors: INVALID_ARGUMENT (reg not a modelled
 *  register, rt > 31, esr NULL). */
VTIME_API vtime_status vtime_encode_trap(uint32_t reg, int is_read, uint8_t rt,
                                         uint64_t *esr) VTIME_NOEXCEPT;

/** The exception level a trapped access came from, as the guest sees it. */
typedef enum vtime_el { VTIME_EL0 = 0, VTIME_EL1 = 1, VTIME_EL2 = 2 } vtime_el;

/** The guest hypervisor's HCR_EL2 bits at the access (VTIME_VCPU_EL2 only),
 *  for vtime_trap's context_flags. */
#define VTIME_CONTEXT_E2H (1u << 0)
#define VTIME_CONTEXT_TGE (1u << 1)
#define VTIME_CONTEXT_NV (1u << 2)

/** One trapped access and the guest's state at it. */
typedef struct vtime_trap {
  uint64_t esr;           /**< ESR_EL2 as the hypervisor reported it */
  uint64_t write_value;   /**< for an MSR: the content of Xt (0 for XZR) */
  uint64_t host_count;    /**< the host's physical count at the access */
  uint32_t el;            /**< a vtime_el */
  uint32_t context_flags; /**< VTIME_CONTEXT_* */
} vtime_trap;

/** How a trapped access ends; the VMM carries it out. */
typedef enum vtime_outcome {
  VTIME_OUTCOME_READ = 0,          /**< put value into Xt (unless XZR), step over */
  VTIME_OUTCOME_WRITTEN = 1,       /**< the model took the write; step over */
  VTIME_OUTCOME_WRITE_IGNORED = 2, /**< allowed, no effect (CNTFRQ_EL0); step over */
  VTIME_OUTCOME_UNDEFINED = 3,     /**< inject an UNDEF into the guest */
  VTIME_OUTCOME_TRAP_TO_EL1 = 4,   /**< EL0 denied by CNTKCTL_EL1: deliver to guest EL1 */
  VTIME_OUTCOME_TRAP_TO_EL2 = 5    /**< the guest hypervisor's: deliver to virtual EL2 */
} vtime_outcome;

/** The result of emulating one access. */
typedef struct vtime_emulation {
  uint64_t value;   /**< for VTIME_OUTCOME_READ: the value for Xt; else 0 */
  uint32_t outcome; /**< a vtime_outcome */
  uint32_t sysreg;  /**< the register accessed, VTIME_SYSREG_NONE if none */
  uint8_t rt;       /**< Xt from the syndrome; 31 is XZR */
  uint8_t is_read;  /**< 1 for MRS */
  uint8_t reserved[6];
} vtime_emulation;

/** Decodes trap->esr and emulates the access against vcpu, with the offsets
 *  and frequency of clock, as the architecture defines it: what a read
 *  returns, what a write changes in vcpu, and which accesses UNDEF or trap
 *  to the guest's own EL1 or EL2. An access the architecture does not allow,
 *  or a register vtime does not model, is not an error: it is an outcome.
 *  Errors: BAD_HANDLE (vcpu or clock), INVALID_ARGUMENT (trap or out NULL,
 *  unknown el or context flag), MALFORMED (the ESR is not a trapped
 *  MSR/MRS; vcpu is unchanged). */
VTIME_API vtime_status vtime_emulate_trap(vtime_vcpu *vcpu, const vtime_clock *clock,
                                          const vtime_trap *trap,
                                          vtime_emulation *out) VTIME_NOEXCEPT;

/** The name of outcome, a vtime_outcome ("read", "UNDEFINED"), in static storage; NULL for
 *  a value not in vtime_outcome. */
VTIME_API const char *vtime_outcome_name(uint32_t outcome) VTIME_NOEXCEPT;

/* ---- saved guest time ----------------------------------------------------- */

/** A VM's saved guest time: offsets plus one (host counter, wall clock) pair
 *  captured at pause, and per vCPU the timer registers (CTL and CVAL only),
 *  nested-virtualization registers and PV stolen-time state. Its binary
 *  encoding is versioned, checksummed and validated (see vtime_state_encode);
 *  the same encoding restored twice gives the same guest view. */
typedef struct vtime_state vtime_state;

/** The most vCPUs a saved state may describe. */
#define VTIME_STATE_MAX_VCPUS 512

/** How the source VMM carried the offsets to its kernel. */
typedef enum vtime_offset_api {
  VTIME_OFFSET_API_NONE = 0,                 /**< KVM's own rules */
  VTIME_OFFSET_API_VM_OFFSET = 1,            /**< KVM_ARM_SET_COUNTER_OFFSET */
  VTIME_OFFSET_API_LEGACY_COUNTER_WRITES = 2 /**< CNTVCT/CNTPCT value writes */
} vtime_offset_api;

/** One instant seen by two clocks read back to back. */
typedef struct vtime_capture_pair {
  uint64_t host_counter; /**< the host's physical count */
  int64_t wall_clock_ns; /**< CLOCK_REALTIME in nanoseconds since the epoch */
} vtime_capture_pair;

/** The VM-level fields of a saved state. */
typedef struct vtime_state_vm {
  /** The binary format version the state is encoded in: 1 up to the newest
   *  this library writes (a fresh state has the newest). An older one lets a
   *  state be written for an older destination. */
  uint32_t format_version;
  uint32_t offset_api;           /**< a vtime_offset_api */
  uint64_t counter_frequency_hz; /**< CNTFRQ; must not be 0 to validate */
  uint64_t virtual_offset;       /**< guest virtual = host - this */
  uint64_t physical_offset;      /**< guest physical = host - this */
  vtime_capture_pair pause;      /**< the pause instant */
} vtime_state_vm;

/** Flags of a saved vCPU. */
#define VTIME_STATE_VCPU_NESTED (1u << 0) /**< the vCPU has virtual EL2 */
#define VTIME_STATE_VCPU_PVTIME (1u << 1) /**< PV stolen time is enabled */

/** One vCPU of a saved state. */
typedef struct vtime_state_vcpu {
  uint64_t timer_ctl[4];  /**< indexed by vtime_timer: ENABLE and IMASK only */
  uint64_t timer_cval[4]; /**< indexed by vtime_timer: absolute CVAL */
  uint64_t cntkctl_el1;
  uint64_t cnthctl_el2; /**< the guest hypervisor's; nested only */
  uint64_t cntvoff_el2; /**< the guest hypervisor's; nested only */
  uint64_t pvtime_ipa;  /**< the stolen-time record's 64-byte aligned IPA */
  uint64_t pvtime_stolen_ns;
  uint32_t pvtime_revision; /**< the record revision the source host served */
  uint32_t flags;           /**< VTIME_STATE_VCPU_* */
} vtime_state_vcpu;

/** Creates an empty state: the newest format version, no vCPUs, every other
 *  field 0 (so it does not validate until a frequency is set). Errors:
 *  INVALID_ARGUMENT (out NULL), NO_MEMORY. On failure *out is set to NULL
 *  when out is not NULL. */
VTIME_API vtime_status vtime_state_create(vtime_state **out) VTIME_NOEXCEPT;

/** Destroys a state. NULL, or a pointer that is not a state, is ignored. */
VTIME_API void vtime_state_destroy(vtime_state *state) VTIME_NOEXCEPT;

/** The state's VM-level fields. Errors: BAD_HANDLE, INVALID_ARGUMENT (out
 *  NULL). */
VTIME_API vtime_status vtime_state_get_vm(const vtime_state *state,
                                          vtime_state_vm *out) VTIME_NOEXCEPT;

/** Sets the state's VM-level fields. Values are stored as given (use
 *  vtime_state_validate to check them), except that an offset_api not in
 *  vtime_offset_api is refused. Errors: BAD_HANDLE, INVALID_ARGUMENT (vm
 *  NULL, unknown offset_api). */
VTIME_API vtime_status vtime_state_set_vm(vtime_state *state,
                                          const vtime_state_vm *vm) VTIME_NOEXCEPT;

/** The number of vCPUs the state holds. Errors: BAD_HANDLE, INVALID_ARGUMENT
 *  (count NULL). */
VTIME_API vtime_status vtime_state_vcpu_count(const vtime_state *state,
                                              size_t *count) VTIME_NOEXCEPT;

/** Grows or shrinks the state to count vCPUs; new ones are all zero.
 *  Errors: BAD_HANDLE, OUT_OF_RANGE (count > VTIME_STATE_MAX_VCPUS),
 *  NO_MEMORY. */
VTIME_API vtime_status vtime_state_set_vcpu_count(vtime_state *state, size_t count) VTIME_NOEXCEPT;

/** vCPU index of the state. Errors: BAD_HANDLE, INVALID_ARGUMENT (out NULL),
 *  OUT_OF_RANGE (index >= the vCPU count). */
VTIME_API vtime_status vtime_state_get_vcpu(const vtime_state *state, size_t index,
                                            vtime_state_vcpu *out) VTIME_NOEXCEPT;

/** Sets vCPU index of the state, stored as given (use vtime_state_validate).
 *  Errors: BAD_HANDLE, INVALID_ARGUMENT (vcpu NULL, unknown flag),
 *  OUT_OF_RANGE (index >= the vCPU count). */
VTIME_API vtime_status vtime_state_set_vcpu(vtime_state *state, size_t index,
                                            const vtime_state_vcpu *vcpu) VTIME_NOEXCEPT;

/** Checks the rules every encoded state obeys: a known format version (a
 *  newer one is UNSUPPORTED), a non-zero frequency, timer CTLs with only
 *  ENABLE and IMASK, EL2 registers zero on a vCPU that is not nested, PV time
 *  disabled with its fields zero or enabled with an aligned IPA. Errors:
 *  BAD_HANDLE, MALFORMED (the message names the vCPU and the field),
 *  UNSUPPORTED. */
VTIME_API vtime_status vtime_state_validate(const vtime_state *state) VTIME_NOEXCEPT;

/** Encodes a valid state in its format version into buffer (see "Buffers"
 *  above: *size in is the capacity, out the bytes written or needed). The
 *  encoding is the "VTSTATE" frame: header, records, CRC-32; its exact
 *  layout is documented in vtime's include/vtime/state/codec.h. Errors:
 *  BAD_HANDLE, INVALID_ARGUMENT (size NULL, buffer NULL with *size > 0),
 *  BUFFER_TOO_SMALL, and vtime_state_validate's errors. */
VTIME_API vtime_status vtime_state_encode(const vtime_state *state, uint8_t *buffer,
                                          size_t *size) VTIME_NOEXCEPT;

/** Decodes size bytes into a new state that the caller owns. Refuses
 *  anything that is not exactly one valid encoding: truncated or extended
 *  input, bad magic, flags or checksum, unknown or duplicate records, and
 *  every state vtime_state_validate refuses. Errors: INVALID_ARGUMENT (out
 *  NULL, bytes NULL with size > 0), MALFORMED, UNSUPPORTED (a newer format
 *  version), NO_MEMORY. On failure *out is set to NULL when out is not
 *  NULL. */
VTIME_API vtime_status vtime_state_decode(const uint8_t *bytes, size_t size,
                                          vtime_state **out) VTIME_NOEXCEPT;

/** A human-readable, pretty-printed JSON view of any state (valid or not),
 *  as a NUL-terminated string in buffer; *size counts the terminating NUL
 *  (see "Buffers"). Keys are in a fixed order; values computed from stored
 *  ones sit under "derived". The binary encoding is the one that restores;
 *  this view is for people and tools. Errors: BAD_HANDLE, INVALID_ARGUMENT
 *  (size NULL, buffer NULL with *size > 0), BUFFER_TOO_SMALL, NO_MEMORY. */
VTIME_API vtime_status vtime_state_to_json(const vtime_state *state, char *buffer,
                                           size_t *size) VTIME_NOEXCEPT;

/* ---- migration policies --------------------------------------------------- */

/** How guest time moves across a pause, a snapshot or a migration. */
typedef enum vtime_policy {
  /** The guest resumes at the count it paused at: no time passes for it. */
  VTIME_POLICY_FREEZE = 0,
  /** The guest's counters advance by the real time elapsed since the pause
   *  (as the two wall clocks say; they are assumed synchronised). */
  VTIME_POLICY_WALLCLOCK = 1
} vtime_policy;

/** The name of policy, a vtime_policy: "freeze" or "wallclock", in static
 *  storage; NULL for another value. */
VTIME_API const char *vtime_policy_name(uint32_t policy) VTIME_NOEXCEPT;

/** Parses "freeze" or "wallclock" (nothing else). Errors: INVALID_ARGUMENT
 *  (name or out NULL, another name). */
VTIME_API vtime_status vtime_policy_parse(const char *name, vtime_policy *out) VTIME_NOEXCEPT;

/** What a destination applies to resume a saved state. */
typedef struct vtime_resume_plan {
  /** The one VM offset for both counters (KVM_ARM_SET_COUNTER_OFFSET, or
   *  vtime_clock_set_vm_offset). Where the source's two counters differed,
   *  it follows the one ahead, so that neither goes backwards. */
  uint64_t vm_offset;
  /** Per-counter offsets for a destination that carries them separately
   *  (legacy counter-value writes): each counter resumes exactly. */
  uint64_t virtual_offset;
  uint64_t physical_offset;
  uint64_t virtual_count_at_resume;  /**< with virtual_offset */
  uint64_t physical_count_at_resume; /**< with physical_offset */
  uint64_t advanced_ticks;           /**< guest time added for the time away (wallclock) */
  /** 1 when the destination's wall clock read before the pause: the guest
   *  then advances by nothing rather than going backwards. */
  uint32_t wall_clock_went_backwards;
  uint32_t reserved;
} vtime_resume_plan;

/** Plans the resume of saved under policy (a vtime_policy) on a destination that captured
 *  *destination (its host counter and wall clock, read back to back just
 *  before resuming) and whose counter runs at destination_frequency_hz.
 *  Deterministic: the same inputs give the same plan. Errors: BAD_HANDLE,
 *  INVALID_ARGUMENT (destination or out NULL, unknown policy, a state with
 *  no counter frequency), UNSUPPORTED (the destination's frequency differs:
 *  a KVM guest's CNTFRQ cannot change, so its time would run at the wrong
 *  rate). */
VTIME_API vtime_status vtime_plan_resume(const vtime_state *saved, uint32_t policy,
                                         const vtime_capture_pair *destination,
                                         uint64_t destination_frequency_hz,
                                         vtime_resume_plan *out) VTIME_NOEXCEPT;


/* ---- KVM: guest time on the VMM's own file descriptors (since 0.2) ------ */

/* For a VMM on Linux arm64 that lets vtime carry guest time to and from KVM.
 * The VMM creates the VM and its vCPUs, owns their file descriptors, and
 * calls these while no vCPU is in KVM_RUN: vtime issues KVM_CHECK_EXTENSION,
 * KVM_ARM_SET_COUNTER_OFFSET, KVM_GET/SET_ONE_REG and KVM_GET_DEVICE_ATTR on
 * the descriptors given and nothing else (it never opens /dev/kvm, creates,
 * closes or runs anything). Guest time is the offsets and the timer
 * registers; the VMM saves the rest of the vCPU (the registers
 * vtime_kvm_is_time_register() says no to), the guest's RAM and its devices
 * itself, and restores them before calling vtime_kvm_restore.
 *
 * Order on the destination: create the VM and every vCPU, KVM_ARM_VCPU_INIT
 * each, set the PV-time IPA if the source had one, restore the VMM's own
 * registers, then vtime_kvm_restore, then run. A VMM that calls
 * vtime_kvm_set_vm_offset right after creating the VM (recommended) also
 * makes the order of vCPU creation irrelevant.
 *
 * Kernels: the VM offset needs KVM_CAP_COUNTER_OFFSET (Linux 6.4). Without
 * it vtime falls back to KVM's legacy counter-value writes (CNTVCT, and
 * CNTPCT where the kernel offsets the physical counter); vtime_kvm_probe
 * says which the VM has. On a host that is not Linux arm64 every function in
 * this section returns VTIME_ERR_UNSUPPORTED and says so. */

/** What KVM offers a VM for guest time: *host_flags (VTIME_HOST_*, for
 *  vtime_clock_create; VTIME_HOST_ECV_CNTPOFF is never set, as KVM does not
 *  report it, which only changes what vtime_clock_get_info calls the
 *  physical mechanism) and *cntfrq_hz, the counter frequency (CNTFRQ_EL0)
 *  the host and its guests run at. Either output may be NULL. Errors:
 *  SYSTEM (vm_fd is not a KVM VM: the message has errno's text),
 *  UNSUPPORTED. */
VTIME_API vtime_status vtime_kvm_probe(int vm_fd, uint32_t *host_flags,
                                       uint64_t *cntfrq_hz) VTIME_NOEXCEPT;

/** The host's physical count now (CNTVCT_EL0 read on a Linux host, where
 *  KVM runs with VHE and it carries no offset): the count KVM's offsets and
 *  vtime_clock's host_count arguments refer to. Errors: INVALID_ARGUMENT
 *  (count NULL), UNSUPPORTED. */
VTIME_API vtime_status vtime_kvm_host_counter(uint64_t *count) VTIME_NOEXCEPT;

/** Sets the VM offset on vm_fd (KVM_ARM_SET_COUNTER_OFFSET) and in clock
 *  (vtime_clock_set_vm_offset), in that order, so the model changes only
 *  when KVM took it. Errors: BAD_HANDLE, UNSUPPORTED (the clock's host has
 *  no VTIME_HOST_VM_OFFSET_API), SYSTEM (KVM refused: EBUSY while a vCPU
 *  ioctl runs). */
VTIME_API vtime_status vtime_kvm_set_vm_offset(vtime_clock *clock, int vm_fd,
                                               uint64_t offset) VTIME_NOEXCEPT;

/** 1 when reg_id (a KVM ONE_REG id, as KVM_GET_REG_LIST lists them) is one
 *  vtime saves and restores as guest time: the two counters, the EL1
 *  timers' CTL and CVAL, CNTKCTL_EL1, and for a vCPU with
 *  KVM_ARM_VCPU_HAS_EL2 CNTVOFF_EL2, CNTHCTL_EL2 and the EL2 timers' CTL and
 *  CVAL. A VMM leaves these out of its own register save, and never writes
 *  a counter value itself. 0 otherwise. */
VTIME_API int vtime_kvm_is_time_register(uint64_t reg_id) VTIME_NOEXCEPT;

/** Captures the guest time of a paused VM into out (which is overwritten;
 *  it keeps its format version): the offsets from clock (the VM offset as
 *  set, or, when the VMM never set it, the offsets KVM is using, measured
 *  on the first vCPU by reading its counters between two host counter
 *  reads), one (host counter, CLOCK_REALTIME) pair read back to back now,
 *  and per vCPU the EL1 timers' CTL (without ISTATUS) and CVAL, CNTKCTL_EL1
 *  (and for a vCPU created with KVM_ARM_VCPU_HAS_EL2, which the state then
 *  marks VTIME_STATE_VCPU_NESTED: CNTVOFF_EL2, CNTHCTL_EL2 and the EL2
 *  timers, which KVM exposes from Linux 6.14 on)
 *  and the PV stolen-time record's IPA if the VMM set one (the record lives
 *  in the guest's RAM, which the VMM saves; pvtime_stolen_ns is left 0 and
 *  the revision is the one KVM serves, 0). vcpu_fds are the VM's vCPUs in
 *  the order a restore gives them. The result validates. Errors:
 *  BAD_HANDLE, INVALID_ARGUMENT (vcpu_fds NULL, vcpu_count 0 or above
 *  VTIME_STATE_MAX_VCPUS), SYSTEM (an ioctl failed: the message names it and
 *  the vCPU), UNSUPPORTED. On failure out is unchanged. */
VTIME_API vtime_status vtime_kvm_capture(const vtime_clock *clock, const int *vcpu_fds,
                                         size_t vcpu_count, vtime_state *out) VTIME_NOEXCEPT;

/** Restores saved on a VM whose vCPUs have been created and initialised but
 *  have not run since: reads the host counter and CLOCK_REALTIME, plans the
 *  resume under policy (vtime_plan_resume), applies the offset (the VM
 *  offset where clock's host has it, else counter-value writes on the first
 *  vCPU) to KVM and to clock, then each vCPU's CNTKCTL_EL1 and timers, CTL
 *  before CVAL, so no timer compares a CVAL against a count it was not
 *  programmed for (a nested vCPU's CNTVOFF_EL2 and CNTHCTL_EL2 before its
 *  timers, its EL2 timers after). *plan (if plan is not NULL) says what was
 *  applied. Refused before anything is written: a state that does not
 *  validate, a vCPU count other than vcpu_count, a vCPU saved nested whose
 *  counterpart here has no EL2 or the other way round, a frequency other than
 *  the host's, a vCPU saved with PV time whose counterpart here has no
 *  record at the same IPA. Errors: BAD_HANDLE, INVALID_ARGUMENT (vcpu_fds
 *  NULL, vcpu_count 0 or above VTIME_STATE_MAX_VCPUS, unknown policy),
 *  MALFORMED, OUT_OF_RANGE (vcpu_count not the state's),
 *  UNSUPPORTED, BAD_STATE (PV time), SYSTEM (an ioctl failed: the message
 *  names it and the vCPU; KVM may then hold part of the state, so the VMM
 *  must not run this VM). */
VTIME_API vtime_status vtime_kvm_restore(vtime_clock *clock, int vm_fd, const int *vcpu_fds,
                                         size_t vcpu_count, const vtime_state *saved,
                                         uint32_t policy,
                                         vtime_resume_plan *plan) VTIME_NOEXCEPT;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* VTIME_VTIME_H_ */
