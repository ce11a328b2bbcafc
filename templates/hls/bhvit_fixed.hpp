// Fixed-point helpers of the BHViT dataflow.  Golden semantics: hw/fixedpoint.py
// (rshift_round: round half up; saturate) and hw/kernels/fixed.py.
#pragma once
#include <ap_int.h>
#include <hls_stream.h>

// Constant tables (weights, thresholds, multipliers) are declared with these:
// plain C integers for g++ (an ap_int array initialiser costs a static
// constructor per element, which made large tables take minutes to compile),
// their exact width under synthesis, so that a ROM is no wider than its data.
// BHVIT_EXACT_TABLES selects the synthesis types in C simulation too (a test
// builds kernels that way: the open ap_types headers refuse __SYNTHESIS__).
#if defined(__SYNTHESIS__) || defined(BHVIT_EXACT_TABLES)
#define BHVIT_UWORD(W, CT) ap_uint<W>
#define BHVIT_SWORD(W, CT) ap_int<W>
#else
#define BHVIT_UWORD(W, CT) CT
#define BHVIT_SWORD(W, CT) CT
#endif

namespace bhvit {

// y = saturate_OB(floor(acc / 2**S + 1/2)) for S > 0, saturate_OB(acc << -S) otherwise.
// ap_int's >> is arithmetic, i.e. floor division by 2**S for negative values too.
template <unsigned OB, int S, unsigned ACC>
ap_int<OB> requant(ap_int<ACC> acc) {
#pragma HLS INLINE
    // wide enough for acc << -S and for the rounding increment
    constexpr unsigned VW = ACC + 2 + (S < 0 ? -S : 0);
    ap_int<VW> v = acc;
    if (S > 0) {
        v = (v + (ap_int<VW>(1) << (S > 0 ? S - 1 : 0))) >> (S > 0 ? S : 0);
    } else {
        v = v << (S > 0 ? 0 : -S);
    }
    const ap_int<VW> lo = -(ap_int<VW>(1) << (OB - 1));
    const ap_int<VW> hi = (ap_int<VW>(1) << (OB - 1)) - 1;
    return v < lo ? ap_int<OB>(lo) : (v > hi ? ap_int<OB>(hi) : ap_int<OB>(v));
}

// Field e of a packed stream word, as a signed (SIGNED) or unsigned B-bit value.
template <unsigned B, bool SIGNED, int W>
ap_int<B + 1> field(const ap_uint<W> &word, unsigned e) {
#pragma HLS INLINE
    const ap_uint<B> raw = word(e * B + B - 1, e * B);
    if (SIGNED) return ap_int<B + 1>(ap_int<B>(raw));
    return ap_int<B + 1>(raw);
}

// Read N words of a stream into buf: the map buffer of the kernels that need a
// whole image (circular shifts, pooling, convolutions with wrap or padding).
template <unsigned N, typename T>
void read_words(hls::stream<T> &in, T buf[N]) {
    for (unsigned i = 0; i < N; i++) {
#pragma HLS PIPELINE II=1
        buf[i] = in.read();
    }
}

// The matrix kernels' input vector (FINN's MVAU input buffer): fold sf of it is
// read from the stream during the first output fold (nf == 0) and replayed
// from buf during the others.
template <typename T>
T read_or_replay(hls::stream<T> &in, T *buf, unsigned nf, unsigned sf) {
#pragma HLS INLINE
    if (nf == 0) buf[sf] = in.read();
    return buf[sf];
}

}  // namespace bhvit
