/* Flattened device tree reader (DTB v16/v17, big-endian) and the timer
 * PPI lookup built on it.
 *
 * Every access is bounds-checked against the header's totalsize and the
 * structure/strings blocks; the blob is read with byte loads (the MMU is
 * off, so all memory is Device memory and unaligned word loads fault).
 * Before anything else the first and the last word of the blob are read
 * with the expected-fault guard: RAM is contiguous, so if both are
 * readable everything between them is. */
#include "fdt.h"
#include "timer.h"

struct fdt {
    const u8 *p;
    u32 size;                 /* totalsize */
    u32 st_off, st_size;      /* structure block */
    u32 str_off, str_size;    /* strings block */
};

/* Callbacks of the structure walk. `data`/`len` are offsets into the blob
 * (already bounds-checked). Returning non-zero from a callback stops the
 * walk early (not an error). */
struct fdt_visitor {
    void (*begin)(struct fdt_visitor *v, const struct fdt *f, u32 name, u32 name_len, int depth);
    void (*prop)(struct fdt_visitor *v, const struct fdt *f, u32 name, u32 data, u32 len, int depth);
    void (*end)(struct fdt_visitor *v, int depth);
};

static u32 be32(const struct fdt *f, u64 off)
{
    const u8 *b = f->p + off;
    return ((u32)b[0] << 24) | ((u32)b[1] << 16) | ((u32)b[2] << 8) | b[3];
}

static u64 align4(u64 x) { return (x + 3) & ~3UL; }


static u32 bswap32(u32 v)
{
    return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
}

/* Does the NUL-terminated string at blob offset `off`, which must end
 * before `limit`, equal `s`? */
static int str_eq(const struct fdt *f, u64 off, u64 limit, const char *s)
{
    for (;;) {
        if (off >= limit)
            return 0;
        u8 c = f->p[off++];
        if (c != (u8)*s)
            return 0;
        if (c == 0)
            return 1;
        s++;
    }
}

/* Does [off, off+len) start with `s`? */
static int has_prefix(const struct fdt *f, u64 off, u64 len, const char *s)
{
    u64 i = 0;
    for (; s[i]; i++)
        if (i >= len || f->p[off + i] != (u8)s[i])
            return 0;
    return 1;
}

/* Does the string list [off, off+len) contain the entry `s` (with prefix,
 * an entry that starts with `s`)? */
static int strlist_match(const struct fdt *f, u64 off, u64 len, const char *s, int prefix)
{
    u64 end = off + len, i = off;
    while (i < end) {
        if (prefix ? has_prefix(f, i, end - i, s) : str_eq(f, i, end, s))
            return 1;
        while (i < end && f->p[i] != 0)
            i++;
        i++;
    }
    return 0;
}

static int fdt_open(struct fdt *f, uptr addr, const char **why)
{
    u32 w;
    if (addr < RAM_BASE || (addr & 3) != 0 || addr > (1UL << 48)) {
        *why = "address not 4-aligned RAM";
        return -1;
    }
    if (!rt_probe32(addr, &w)) {
        *why = "header not readable";
        return -1;
    }
    if (bswap32(w) != FDT_MAGIC) {
        *why = "bad magic";
        return -1;
    }
    if (!rt_probe32(addr + 4, &w)) {
        *why = "header not readable";
        return -1;
    }
    u32 size = bswap32(w);
    if (size < 40 || size > FDT_MAX_SIZE) {
        *why = "totalsize out of range";
        return -1;
    }
    if (!rt_probe32((addr + size - 1) & ~3UL, &w)) {
        *why = "blob not readable up to totalsize";
        return -1;
    }
    f->p = (const u8 *)addr;
    f->size = size;

    u32 version = be32(f, 20), last_comp = be32(f, 24);
    if (version < 16 || last_comp > 17) {
        *why = "unsupported version";
        return -1;
    }
    f->st_off = be32(f, 8);
    f->str_off = be32(f, 12);
    f->str_size = be32(f, 32);
    f->st_size = version >= 17 ? be32(f, 36) : (f->st_off <= size ? size - f->st_off : 0);
    if (f->st_off < 40 || (f->st_off & 3) != 0 || (u64)f->st_off + f->st_size > size) {
        *why = "structure block out of bounds";
        return -1;
    }
    if ((u64)f->str_off + f->str_size > size) {
        *why = "strings block out of bounds";
        return -1;
    }
    return 0;
}

/* Walk the structure block; validates nesting and token layout. */
static int fdt_walk(const struct fdt *f, struct fdt_visitor *v, const char **why)
{
    u64 off = f->st_off, end = (u64)f->st_off + f->st_size;
    int depth = 0, closed_root = 0;
    while (off + 4 <= end) {
        u32 tok = be32(f, off);
        switch (tok) {
        case FDT_BEGIN_NODE: {
            if (closed_root) {
                *why = "node after the root";
                return -1;
            }
            u64 name = off + 4, n = name;
            while (n < end && f->p[n] != 0)
                n++;
            if (n >= end) {
                *why = "unterminated node name";
                return -1;
            }
            if (++depth > FDT_MAX_DEPTH) {
                *why = "nodes nested too deep";
                return -1;
            }
            if (v->begin)
                v->begin(v, f, (u32)name, (u32)(n - name), depth);
            off = align4(n + 1);
            break;
        }
        case FDT_END_NODE:
            if (depth == 0) {
                *why = "unbalanced FDT_END_NODE";
                return -1;
            }
            if (v->end)
                v->end(v, depth);
            if (--depth == 0)
                closed_root = 1;
            off += 4;
            break;
        case FDT_PROP: {
            if (off + 12 > end) {
                *why = "truncated property";
                return -1;
            }
            u32 len = be32(f, off + 4), nameoff = be32(f, off + 8);
            u64 data = off + 12;
            if (len > end - data) {
                *why = "property runs past the structure block";
                return -1;
            }
            if (nameoff >= f->str_size) {
                *why = "property name out of bounds";
                return -1;
            }
            if (depth == 0) {
                *why = "property outside a node";
                return -1;
            }
            if (v->prop)
                v->prop(v, f, f->str_off + nameoff, (u32)data, len, depth);
            off = align4(data + len);
            break;
        }
        case FDT_NOP:
            off += 4;
            break;
        case FDT_END:
            if (depth != 0 || !closed_root) {
                *why = "FDT_END inside a node";
                return -1;
            }
            return 0;
        default:
            *why = "bad structure token";
            return -1;
        }
    }
    *why = "no FDT_END in the structure block";
    return -1;
}

static int prop_is(const struct fdt *f, u32 name, const char *s)
{
    return str_eq(f, name, (u64)f->str_off + f->str_size, s);
}

/* Is the node name [name, name+len) `s` or `s@...`? */
static int name_is(const struct fdt *f, u32 name, u32 len, const char *s)
{
    u32 n = 0;
    while (s[n])
        n++;
    if (len < n)
        return 0;
    for (u32 i = 0; i < n; i++)
        if (f->p[name + i] != (u8)s[i])
            return 0;
    return len == n || f->p[name + n] == '@';
}


/* ---- pass 1: find the timer node, its interrupts and interrupt-parent ---- */

struct timer_cand {
    int found;
    u32 ints, ints_len;       /* blob offset and length of `interrupts` */
    u32 iparent;              /* effective interrupt-parent phandle, 0 = none */
};

struct timer_visit {
    struct fdt_visitor v;
    u32 iparent[FDT_MAX_DEPTH + 1];  /* inherited interrupt-parent per depth */
    int cur_depth;                   /* node whose properties we collect, 0 = none */
    int cur_compat, cur_named, cur_has_ints;
    u32 cur_ints, cur_ints_len;
    struct timer_cand by_compat, by_name;
};

static void tv_begin(struct fdt_visitor *v, const struct fdt *f, u32 name, u32 len, int depth)
{
    struct timer_visit *t = (struct timer_visit *)v;
    t->iparent[depth] = t->iparent[depth - 1];
    t->cur_depth = depth;
    t->cur_compat = 0;
    t->cur_named = name_is(f, name, len, "timer");
    t->cur_has_ints = 0;
}

static void tv_prop(struct fdt_visitor *v, const struct fdt *f, u32 name, u32 data, u32 len, int depth)
{
    struct timer_visit *t = (struct timer_visit *)v;
    if (depth != t->cur_depth)
        return;              /* a property after a child node: ignore */
    if (prop_is(f, name, "compatible")) {
        t->cur_compat = strlist_match(f, data, len, "arm,armv8-timer", 0);
    } else if (prop_is(f, name, "interrupts")) {
        t->cur_has_ints = 1;
        t->cur_ints = data;
        t->cur_ints_len = len;
    } else if (prop_is(f, name, "interrupt-parent") && len == 4) {
        t->iparent[depth] = be32(f, data);
    }
}

static void tv_end(struct fdt_visitor *v, int depth)
{
    struct timer_visit *t = (struct timer_visit *)v;
    if (depth != t->cur_depth)
        return;
    if (t->cur_has_ints && (t->cur_compat || t->cur_named)) {
        struct timer_cand *c = t->cur_compat ? &t->by_compat : &t->by_name;
        if (!c->found) {
            c->found = 1;
            c->ints = t->cur_ints;
            c->ints_len = t->cur_ints_len;
            c->iparent = t->iparent[depth];
        }
    }
    t->cur_depth = 0;
}

/* ---- pass 2: #interrupt-cells of the node with a given phandle ---- */

struct cells_visit {
    struct fdt_visitor v;
    u32 phandle;
    int cur_depth, cur_match, cur_has_cells;
    u32 cur_cells;
    int found;
    u32 cells;
};

static void cv_begin(struct fdt_visitor *v, const struct fdt *f, u32 name, u32 len, int depth)
{
    struct cells_visit *c = (struct cells_visit *)v;
    (void)f;
    (void)name;
    (void)len;
    c->cur_depth = depth;
    c->cur_match = c->cur_has_cells = 0;
}

static void cv_prop(struct fdt_visitor *v, const struct fdt *f, u32 name, u32 data, u32 len, int depth)
{
    struct cells_visit *c = (struct cells_visit *)v;
    if (depth != c->cur_depth || len != 4)
        return;
    if (prop_is(f, name, "phandle") || prop_is(f, name, "linux,phandle")) {
        if (be32(f, data) == c->phandle)
            c->cur_match = 1;
    } else if (prop_is(f, name, "#interrupt-cells")) {
        c->cur_has_cells = 1;
        c->cur_cells = be32(f, data);
    }
}

static void cv_end(struct fdt_visitor *v, int depth)
{
    struct cells_visit *c = (struct cells_visit *)v;
    if (depth != c->cur_depth)
        return;
    if (c->cur_match && c->cur_has_cells && !c->found) {
        c->found = 1;
        c->cells = c->cur_cells;
    }
    c->cur_depth = 0;
}

int fdt_timer_intids(uptr dtb, u32 *virt, u32 *phys, const char **why)
{
    struct fdt f;
    if (fdt_open(&f, dtb, why))
        return -1;

    struct timer_visit tv;
    memset(&tv, 0, sizeof(tv));
    tv.v.begin = tv_begin;
    tv.v.prop = tv_prop;
    tv.v.end = tv_end;
    if (fdt_walk(&f, &tv.v, why))
        return -1;
    struct timer_cand *c = tv.by_compat.found ? &tv.by_compat : &tv.by_name;
    if (!c->found) {
        *why = "has no timer node with interrupts";
        return -1;
    }

    /* Specifier size from the interrupt parent; the GIC bindings use 3
     * cells (GICv3 may add a 4th, the PPI partition), and type, number
     * and flags come first either way. Without a parent assume 3. */
    u32 cells = 3;
    if (c->iparent != 0) {
        struct cells_visit cv;
        memset(&cv, 0, sizeof(cv));
        cv.v.begin = cv_begin;
        cv.v.prop = cv_prop;
        cv.v.end = cv_end;
        cv.phandle = c->iparent;
        if (fdt_walk(&f, &cv.v, why))
            return -1;
        if (cv.found)
            cells = cv.cells;
    }
    if (cells < 3 || cells > 4) {
        *why = "interrupt parent has an unsupported #interrupt-cells";
        return -1;
    }
    u32 spec = cells * 4;
    if (c->ints_len % spec != 0 || c->ints_len / spec < 3) {
        *why = "timer interrupts has the wrong length";
        return -1;
    }
    /* Order: secure phys, non-secure phys, virt, hyp phys, hyp virt. */
    u32 p_type = be32(&f, c->ints + 1 * spec), p_num = be32(&f, c->ints + 1 * spec + 4);
    u32 v_type = be32(&f, c->ints + 2 * spec), v_num = be32(&f, c->ints + 2 * spec + 4);
    if (p_type != 1 || v_type != 1 || p_num > 15 || v_num > 15) {
        *why = "timer interrupt is not a PPI";
        return -1;
    }
    if (p_num == v_num) {
        *why = "virtual and physical timers share a PPI";
        return -1;
    }
    *virt = v_num + 16;
    *phys = p_num + 16;
    return 0;
}

/* ---- the PSCI node's method ---- */

struct psci_visit {
    struct fdt_visitor v;
    int cur_depth, cur_psci, cur_method;    /* 0 none, 1 hvc, 2 smc, 3 other */
    int method;                             /* of the first PSCI node that has one */
};

static void pv_begin(struct fdt_visitor *v, const struct fdt *f, u32 name, u32 len, int depth)
{
    struct psci_visit *p = (struct psci_visit *)v;
    p->cur_depth = depth;
    p->cur_psci = name_is(f, name, len, "psci");
    p->cur_method = 0;
}

static void pv_prop(struct fdt_visitor *v, const struct fdt *f, u32 name, u32 data, u32 len, int depth)
{
    struct psci_visit *p = (struct psci_visit *)v;
    if (depth != p->cur_depth)
        return;
    if (prop_is(f, name, "compatible")) {
        if (strlist_match(f, data, len, "arm,psci", 1))   /* arm,psci, -0.2, -1.0 */
            p->cur_psci = 1;
    } else if (prop_is(f, name, "method")) {
        if (len == 4 && str_eq(f, data, (u64)data + len, "hvc"))
            p->cur_method = 1;
        else if (len == 4 && str_eq(f, data, (u64)data + len, "smc"))
            p->cur_method = 2;
        else
            p->cur_method = 3;
    }
}

static void pv_end(struct fdt_visitor *v, int depth)
{
    struct psci_visit *p = (struct psci_visit *)v;
    if (depth != p->cur_depth)
        return;
    if (p->cur_psci && p->cur_method != 0 && p->method == 0)
        p->method = p->cur_method;
    p->cur_depth = 0;
}

int fdt_psci_smc(uptr dtb, int *smc, const char **why)
{
    struct fdt f;
    if (fdt_open(&f, dtb, why))
        return -1;
    struct psci_visit pv;
    memset(&pv, 0, sizeof(pv));
    pv.v.begin = pv_begin;
    pv.v.prop = pv_prop;
    pv.v.end = pv_end;
    if (fdt_walk(&f, &pv.v, why))
        return -1;
    if (pv.method == 0) {
        *why = "has no PSCI node with a method";
        return -1;
    }
    if (pv.method == 3) {
        *why = "PSCI method is neither hvc nor smc";
        return -1;
    }
    *smc = pv.method == 2;
    return 0;
}

/* ---- where the DTB is ---- */

uptr rt_dtb_addr(void)
{
    uptr addr = rt_dtb;
#ifdef RT_TEST_DTB_ADDR
    if (addr == 0)
        addr = (uptr)(RT_TEST_DTB_ADDR);
#endif
    return addr;
}

/* ---- timer PPIs for the programs ---- */

static int tp_done, tp_from_dtb;
static u32 tp_virt = INTID_VTIMER_DEFAULT, tp_phys = INTID_PTIMER_DEFAULT;

static void timer_ppi_init(void)
{
    if (tp_done)
        return;
    tp_done = 1;
    uptr addr = rt_dtb_addr();
    if (addr == 0)
        return;                                  /* no DTB (QEMU ELF): defaults */
    const char *why = "?";
    u32 v, p;
    if (fdt_timer_intids(addr, &v, &p, &why) == 0) {
        tp_virt = v;
        tp_phys = p;
        tp_from_dtb = 1;
        return;
    }
    uart_puts("timer: dtb at ");
    uart_puthex(addr);
    uart_puts(" ");
    uart_puts(why);
    uart_puts(", using vtimer_intid=");
    uart_putdec(tp_virt);
    uart_puts(" ptimer_intid=");
    uart_putdec(tp_phys);
    uart_putc('\n');
}

u32 rt_timer_ppi_virt(void)
{
    timer_ppi_init();
    return tp_virt;
}

u32 rt_timer_ppi_phys(void)
{
    timer_ppi_init();
    return tp_phys;
}

int rt_timer_ppi_from_dtb(void)
{
    timer_ppi_init();
    return tp_from_dtb;
}
