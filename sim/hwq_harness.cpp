// The compiled simulation harness: the Verilated hwq_core and a host that drives it.
//
// Built by hwq.sim.compiled into a shared library with the Verilated model and called from
// Python through ctypes (hwq.sim.compiled.CompiledModel). The clock runs here: a register
// access is one AXI4-Lite transaction on the s_axil port, cycle by cycle, the way the
// cocotb path's master performs it (address and data presented together, the response
// taken the cycle it is valid); bulk words go as beats on the s_axis port, one 32-bit chunk
// per cycle; waiting for DONE clocks the core until its irq line rises. Register offsets,
// bit masks and memory ids come from hwq_regs.h, written from hwq.layout.regmap.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "Vhwq_core.h"
#include "hwq_regs.h"
#include "verilated.h"
#if VM_COVERAGE
#include "verilated_cov.h"
#endif
#if VM_TRACE_FST
#include "verilated_fst_c.h"
using Trace = VerilatedFstC;
#elif VM_TRACE
#include "verilated_vcd_c.h"
using Trace = VerilatedVcdC;
#endif

// Verilator spells the "__" of Amaranth's flattened port names "___05F".
#define AXIL(name) top->s_axil___05F##name
#define AXIS(name) top->s_axis___05F##name
#define MAXI(name) top->m_axi___05F##name

namespace {

#ifdef HWQ_EXT_BITS
// The external memory on the core's m_axi port (hwq.golden.memory's model): a read
// address is accepted in the cycle it is offered, its burst's first beat comes `latency`
// cycles later at the earliest, one beat per cycle, bursts in order. Write addresses and
// data are accepted in the cycle they are offered (data may come first) and a write burst's
// response comes `latency` cycles after both its address and its last beat at the earliest,
// in order. With a stall probability each cycle drops arready, awready or wready or
// withholds a read beat or a response (xorshift, seeded). Beats outside the image read
// SLVERR and zeros; writes outside it are dropped and answered SLVERR.
constexpr uint32_t EXT_BYTES = HWQ_EXT_BITS / 8;

struct AxiMemory {
    struct Burst {
        uint64_t addr;
        uint32_t left;
        uint64_t first;  // earliest cycle of its first beat
    };
    std::vector<uint8_t> data;
    uint64_t base = 0;
    uint32_t latency = 4;
    uint32_t stall_ppm = 0;  // stall probability in parts per million
    uint64_t state = 1;
    uint64_t beats = 0;
    std::deque<Burst> bursts;
    bool ar_ready = false, give = false, take_ar = false, taken = false;
    Burst request{};

    struct WriteBurst {
        uint64_t addr;
        uint32_t len, got = 0;
        uint64_t ready = 0;  // max(address cycle, last beat cycle)
        bool inside = true;
    };
    struct Beat {
        uint8_t bytes[EXT_BYTES];
        uint32_t strobe;
        uint64_t cycle;
    };
    std::deque<WriteBurst> writes;  // address accepted, in order
    std::deque<Beat> early;         // data beats ahead of their address
    bool aw_ready = false, w_ready = false, respond = false;
    bool take_aw = false, take_w = false, responded = false;
    WriteBurst aw_request{};
    Beat w_request{};

    // The burst the next data beat belongs to (the oldest not yet full), or null.
    WriteBurst* filling() {
        for (WriteBurst& b : writes)
            if (b.got < b.len) return &b;
        return nullptr;
    }

    void put(WriteBurst& b, const Beat& beat) {
        uint64_t at = b.addr + static_cast<uint64_t>(b.got) * EXT_BYTES;
        bool inside = at >= base && at - base + EXT_BYTES <= data.size();
        b.inside = b.inside && inside;
        if (inside)
            for (uint32_t i = 0; i < EXT_BYTES; ++i)
                if (beat.strobe >> i & 1u) data[at - base + i] = beat.bytes[i];
        b.ready = std::max(b.ready, beat.cycle);
        ++b.got;
    }

    bool stall() {
        if (!stall_ppm) return false;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state % 1000000u < stall_ppm;
    }

    // Before the rising edge that ends `cycle`: drive this cycle's outputs.
    void drive(Vhwq_core* top, uint64_t cycle) {
        ar_ready = !stall();
        MAXI(arready) = ar_ready;
        give = !bursts.empty() && bursts.front().first <= cycle && !stall();
        MAXI(rvalid) = give;
        if (give) {
            const Burst& b = bursts.front();
            uint32_t words[(EXT_BYTES + 3) / 4] = {};
            bool inside = b.addr >= base && b.addr - base + EXT_BYTES <= data.size();
            if (inside) std::memcpy(words, &data[b.addr - base], EXT_BYTES);
#if HWQ_EXT_BITS > 64
            for (uint32_t i = 0; i < EXT_BYTES / 4; ++i) MAXI(rdata)[i] = words[i];
#elif HWQ_EXT_BITS > 32
            MAXI(rdata) = static_cast<uint64_t>(words[1]) << 32 | words[0];
#else
            MAXI(rdata) = words[0];
#endif
            MAXI(rresp) = inside ? 0 : 2;
            MAXI(rlast) = b.left == 1;
        }
        aw_ready = !stall();
        MAXI(awready) = aw_ready;
        w_ready = !stall();
        MAXI(wready) = w_ready;
        respond = !writes.empty() && writes.front().got == writes.front().len
                  && writes.front().ready + latency <= cycle && !stall();
        MAXI(bvalid) = respond;
        if (respond) MAXI(bresp) = writes.front().inside ? 0 : 2;
    }

    // After the settle, before the edge: what the core offers in this cycle.
    void sample(Vhwq_core* top, uint64_t cycle) {
        take_ar = ar_ready && MAXI(arvalid);
        if (take_ar) request = {MAXI(araddr), static_cast<uint32_t>(MAXI(arlen)) + 1u,
                                cycle + latency};
        taken = give && MAXI(rready);
        take_aw = aw_ready && MAXI(awvalid);
        if (take_aw) aw_request = {MAXI(awaddr), static_cast<uint32_t>(MAXI(awlen)) + 1u, 0,
                                   cycle, true};
        take_w = w_ready && MAXI(wvalid);
        if (take_w) {
            uint32_t words[(EXT_BYTES + 3) / 4] = {};
#if HWQ_EXT_BITS > 64
            for (uint32_t i = 0; i < EXT_BYTES / 4; ++i) words[i] = MAXI(wdata)[i];
#elif HWQ_EXT_BITS > 32
            words[0] = static_cast<uint32_t>(MAXI(wdata));
            words[1] = static_cast<uint32_t>(MAXI(wdata) >> 32);
#else
            words[0] = MAXI(wdata);
#endif
            std::memcpy(w_request.bytes, words, EXT_BYTES);
            w_request.strobe = static_cast<uint32_t>(MAXI(wstrb));
            w_request.cycle = cycle;
        }
        responded = respond && MAXI(bready);
    }

    // After the edge: the handshakes took place.
    void commit() {
        if (responded) writes.pop_front();
        if (take_aw) {
            writes.push_back(aw_request);
            while (!early.empty() && filling() == &writes.back()) {
                put(writes.back(), early.front());
                early.pop_front();
            }
        }
        if (take_w) {
            ++beats;
            if (WriteBurst* b = filling()) {
                put(*b, w_request);
            } else {
                early.push_back(w_request);
            }
        }
        if (taken) {
            ++beats;
            Burst& b = bursts.front();
            b.addr += EXT_BYTES;
            if (--b.left == 0) bursts.pop_front();
        }
        if (take_ar) bursts.push_back(request);
    }
};
#endif

constexpr uint64_t HALF_PERIOD = 5;  // trace time units (ns): a 10 ns clock, as under cocotb

struct Sim {
    VerilatedContext context;
    std::unique_ptr<Vhwq_core> top;
    uint64_t cycle = 0;       // rising clock edges since the model was made
    bool irq_enabled = false;
#ifdef HWQ_EXT_BITS
    AxiMemory memory;
#endif
#if VM_TRACE
    std::unique_ptr<Trace> trace;
#endif

    explicit Sim(bool tracing) {
        context.traceEverOn(tracing);  // before the model exists
        top = std::make_unique<Vhwq_core>(&context);
    }

    // One clock cycle: the falling edge, then the rising edge (inputs set before the call
    // are seen at the rising edge; outputs read after it show the state after that edge).
    void tick() {
        top->clk = 0;
#ifdef HWQ_EXT_BITS
        memory.drive(top.get(), cycle);
#endif
        top->eval();
#ifdef HWQ_EXT_BITS
        memory.sample(top.get(), cycle);
#endif
        dump();
        top->clk = 1;
        top->eval();
        ++cycle;
#ifdef HWQ_EXT_BITS
        memory.commit();
#endif
        dump();
    }

    void dump() {
#if VM_TRACE
        context.timeInc(HALF_PERIOD);
        if (trace) trace->dump(context.time());
#endif
    }

    // A transaction starts at the next clock edge (cocotbext-axi's sources drive a request
    // at the first edge after it is queued), then waits for the handshake and the response.
    void write(uint32_t offset, uint32_t value) {
        tick();
        AXIL(awaddr) = offset;
        AXIL(wdata) = value;
        AXIL(wstrb) = 0xF;
        AXIL(awvalid) = 1;
        AXIL(wvalid) = 1;
        AXIL(bready) = 1;
        top->eval();  // the ready outputs follow the valid inputs combinationally
        for (bool taken = false; !taken;) {
            taken = AXIL(awready) && AXIL(wready);
            tick();
        }
        AXIL(awvalid) = 0;
        AXIL(wvalid) = 0;
        for (bool done = false; !done;) {
            done = AXIL(bvalid);
            tick();
        }
    }

    uint32_t read(uint32_t offset) {
        tick();
        AXIL(araddr) = offset;
        AXIL(arvalid) = 1;
        AXIL(rready) = 1;
        top->eval();
        for (bool taken = false; !taken;) {
            taken = AXIL(arready);
            tick();
        }
        AXIL(arvalid) = 0;
        for (;;) {
            bool valid = AXIL(rvalid);
            uint32_t data = AXIL(rdata);
            tick();
            if (valid) return data;
        }
    }

    void stream(const uint32_t* chunks, uint64_t n) {
        AXIS(tvalid) = 1;
        for (uint64_t i = 0; i < n; ++i) {
            AXIS(tdata) = chunks[i];
            top->eval();
            for (bool taken = false; !taken;) {
                taken = AXIS(tready);
                tick();
            }
        }
        AXIS(tvalid) = 0;
    }
};

}  // namespace

extern "C" {

// A new model, out of reset after ``reset_cycles`` cycles; a trace file if ``waves`` is a
// path (a library built with tracing) or null. Returns null if the model cannot be made.
void* hwq_open(const char* waves, uint32_t reset_cycles) {
    const bool tracing = waves && *waves;
#if !VM_TRACE
    if (tracing) return nullptr;
#endif
    Sim* sim = new Sim(tracing);
#if VM_TRACE
    if (tracing) {
        sim->trace = std::make_unique<Trace>();
        sim->top->trace(sim->trace.get(), 99);
        sim->trace->open(waves);
    }
#endif
    sim->top->rst = 1;
    for (uint32_t i = 0; i < reset_cycles; ++i) sim->tick();
    sim->top->rst = 0;
    sim->tick();
    return sim;
}

void hwq_close(void* handle) {
    Sim* sim = static_cast<Sim*>(handle);
#if VM_TRACE
    if (sim->trace) sim->trace->close();
#endif
    sim->top->final();
    delete sim;
}

uint64_t hwq_cycle(void* handle) { return static_cast<Sim*>(handle)->cycle; }

uint32_t hwq_read(void* handle, uint32_t offset) {
    return static_cast<Sim*>(handle)->read(offset);
}

void hwq_write(void* handle, uint32_t offset, uint32_t value) {
    static_cast<Sim*>(handle)->write(offset, value);
}

// ``n`` 32-bit chunks into memory ``memory`` from word ``base`` on, over s_axis.
void hwq_write_words(void* handle, uint32_t memory, uint32_t base, const uint32_t* chunks,
                     uint64_t n) {
    Sim* sim = static_cast<Sim*>(handle);
    sim->write(HWQ_REG_BULK_SEL, memory);
    sim->write(HWQ_REG_BULK_ADDR, base);
    sim->stream(chunks, n);
}

// ``n`` 32-bit chunks of the activation memory from word ``base`` on, through BULK_RDATA.
void hwq_read_act(void* handle, uint32_t base, uint32_t* out, uint64_t n) {
    Sim* sim = static_cast<Sim*>(handle);
    sim->write(HWQ_REG_BULK_SEL, HWQ_MEM_ACT);
    sim->write(HWQ_REG_BULK_ADDR, base);
    for (uint64_t i = 0; i < n; ++i) out[i] = sim->read(HWQ_REG_BULK_RDATA);
}

// Wait on the irq line (enabled on first use) for at most ``max_cycles`` cycles, then one
// more edge; 0 when DONE came, 1 on timeout.
int hwq_wait_done(void* handle, uint64_t max_cycles) {
    Sim* sim = static_cast<Sim*>(handle);
    if (!sim->irq_enabled) {
        sim->write(HWQ_REG_IRQ_ENABLE, HWQ_BIT_IRQ_ENABLE_DONE);
        sim->irq_enabled = true;
    }
    if (sim->top->irq) return 0;
    const uint64_t end = sim->cycle + max_cycles;
    while (!sim->top->irq) {
        if (sim->cycle >= end) return 1;
        sim->tick();
    }
    sim->tick();
    return 0;
}

// CYCLES into out[0], then LAYER_CYCLES of layers 0 .. layers-1 (through LAYER_SEL).
void hwq_counters(void* handle, uint32_t layers, uint32_t* out) {
    Sim* sim = static_cast<Sim*>(handle);
    out[0] = sim->read(HWQ_REG_CYCLES);
    for (uint32_t i = 0; i < layers; ++i) {
        sim->write(HWQ_REG_LAYER_SEL, i);
        out[i + 1] = sim->read(HWQ_REG_LAYER_CYCLES);
    }
}

// The external memory: ``n`` 32-bit chunks from byte ``base`` on, read with ``latency``
// and a stall probability of ``stall_ppm`` per million (seed ``seed``). Returns 0, or -1
// when the library's core has no m_axi port.
int hwq_ext_load(void* handle, const uint32_t* chunks, uint64_t n, uint64_t base,
                 uint32_t latency, uint32_t stall_ppm, uint64_t seed) {
#ifdef HWQ_EXT_BITS
    AxiMemory& mem = static_cast<Sim*>(handle)->memory;
    mem.data.assign(reinterpret_cast<const uint8_t*>(chunks),
                    reinterpret_cast<const uint8_t*>(chunks) + 4 * n);
    mem.base = base;
    mem.latency = latency;
    mem.stall_ppm = stall_ppm;
    mem.state = seed * 2654435761u + 88172645463325252ull;
    return 0;
#else
    (void)handle, (void)chunks, (void)n, (void)base, (void)latency, (void)stall_ppm, (void)seed;
    return -1;
#endif
}

// Overwrite ``n`` 32-bit chunks of the external memory from byte ``offset`` of the image on
// (a network input). Returns 0, or -1 without m_axi or past the image's end.
int hwq_ext_write(void* handle, const uint32_t* chunks, uint64_t n, uint64_t offset) {
#ifdef HWQ_EXT_BITS
    AxiMemory& mem = static_cast<Sim*>(handle)->memory;
    if (offset + 4 * n > mem.data.size()) return -1;
    std::memcpy(&mem.data[offset], chunks, 4 * n);
    return 0;
#else
    (void)handle, (void)chunks, (void)n, (void)offset;
    return -1;
#endif
}

// ``n`` 32-bit chunks of the external memory from byte ``offset`` of the image on (what
// the core stored there). Returns 0, or -1 without m_axi or past the image's end.
int hwq_ext_read(void* handle, uint32_t* chunks, uint64_t n, uint64_t offset) {
#ifdef HWQ_EXT_BITS
    AxiMemory& mem = static_cast<Sim*>(handle)->memory;
    if (offset + 4 * n > mem.data.size()) return -1;
    std::memcpy(chunks, &mem.data[offset], 4 * n);
    return 0;
#else
    (void)handle, (void)chunks, (void)n, (void)offset;
    return -1;
#endif
}

// Toggle counts of a library built with --coverage-toggle: zeroed when ``path`` is null,
// else written there (Verilator's coverage.dat format). 1 when the library counts none.
int hwq_coverage(void* handle, const char* path) {
#if VM_COVERAGE
    Sim* sim = static_cast<Sim*>(handle);
    if (path) {
        sim->context.coveragep()->write(path);
    } else {
        sim->context.coveragep()->zero();
    }
    return 0;
#else
    (void)handle;
    (void)path;
    return 1;
#endif
}

// ``cycles`` cycles of the free-running clock, no transactions.
void hwq_run(void* handle, uint64_t cycles) {
    Sim* sim = static_cast<Sim*>(handle);
    for (uint64_t i = 0; i < cycles; ++i) sim->tick();
}

}  // extern "C"
