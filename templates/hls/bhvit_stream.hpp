// Stream plumbing of the generated dataflow top: re-folding between nodes of
// different PE, and the AXI-Stream ports PYNQ's DMA talks to.  (Fan-outs are
// generated into the top file: one function per fanned tensor.)
#pragma once
#include <ap_int.h>
#include <hls_stream.h>

// Vitis HLS ships ap_axi_sdata.h (ap_axiu: data, keep, strb, last and the
// optional side channels).  The Apache-2.0 ap_types headers used for C
// simulation without Vitis do not, so a struct with the same field names
// stands in: the top and its testbench only touch data, keep, strb and last.
#if defined(__has_include)
#if __has_include(<ap_axi_sdata.h>)
#include <ap_axi_sdata.h>
#define BHVIT_HAVE_AXI_SDATA 1
#endif
#endif

namespace bhvit {

#ifdef BHVIT_HAVE_AXI_SDATA
template <unsigned W>
using axis_word = ap_axiu<W, 0, 0, 0>;
#else
template <unsigned W>
struct axis_word {
    ap_uint<W> data;
    ap_uint<W / 8> keep;
    ap_uint<W / 8> strb;
    ap_uint<1> last;
};
#endif

// Re-fold rows of C values from IN_PE values of IB bits per word to OUT_PE
// values of OB >= IB bits (producer and consumer folded differently, or the
// consumer reads a wider type: values are sign- (SIGNED) or zero-extended).
// A row is collected first: the two foldings need not divide each other.
template <unsigned C, unsigned IB, unsigned OB, bool SIGNED, unsigned IN_PE, unsigned OUT_PE>
void refold(hls::stream<ap_uint<IN_PE * IB> > &in, hls::stream<ap_uint<OUT_PE * OB> > &out, unsigned rows) {
    static_assert(C % IN_PE == 0 && C % OUT_PE == 0, "both foldings must divide the row");
    static_assert(OB >= IB, "refold only widens");
    ap_uint<OB> row[C];
    for (unsigned r = 0; r < rows; r++) {
        for (unsigned f = 0; f < C / IN_PE; f++) {
#pragma HLS PIPELINE II=1
            const ap_uint<IN_PE * IB> w = in.read();
            for (unsigned e = 0; e < IN_PE; e++) {
                const ap_uint<IB> raw = w(e * IB + IB - 1, e * IB);
                row[f * IN_PE + e] = SIGNED ? ap_uint<OB>(ap_int<OB>(ap_int<IB>(raw))) : ap_uint<OB>(raw);
            }
        }
        for (unsigned f = 0; f < C / OUT_PE; f++) {
#pragma HLS PIPELINE II=1
            ap_uint<OUT_PE * OB> w = 0;
            for (unsigned e = 0; e < OUT_PE; e++) w(e * OB + OB - 1, e * OB) = row[f * OUT_PE + e];
            out.write(w);
        }
    }
}

// AXI-Stream in -> the first node's stream: V values of VB bits per image,
// packed AXW / VB per beat from bit 0 up (the DMA's byte order); the last
// beat of an image is padded.  TLAST is not needed: `images` says how many.
template <unsigned AXW, unsigned VB, unsigned PE, unsigned V>
void axis_to_stream(hls::stream<axis_word<AXW> > &in, hls::stream<ap_uint<PE * VB> > &out, unsigned images) {
    static_assert(AXW % VB == 0 && V % PE == 0, "values must tile the beat and the word");
    constexpr unsigned PER_BEAT = AXW / VB;
    constexpr unsigned BEATS = (V + PER_BEAT - 1) / PER_BEAT;
    for (unsigned img = 0; img < images; img++) {
        ap_uint<PE * VB> word = 0;
        unsigned e = 0, v = 0;
        for (unsigned b = 0; b < BEATS; b++) {
            const ap_uint<AXW> data = in.read().data;
            for (unsigned k = 0; k < PER_BEAT; k++) {
#pragma HLS PIPELINE II=1
                if (v < V) {
                    word(e * VB + VB - 1, e * VB) = data(k * VB + VB - 1, k * VB);
                    v++;
                    if (++e == PE) {
                        out.write(word);
                        e = 0;
                    }
                }
            }
        }
    }
}

// The last node's stream -> AXI-Stream out: one value per beat, sign- (or zero-)
// extended to AXW bits, V values per image, TLAST on the last beat of the batch.
template <unsigned AXW, unsigned VB, bool SIGNED, unsigned PE, unsigned V>
void stream_to_axis(hls::stream<ap_uint<PE * VB> > &in, hls::stream<axis_word<AXW> > &out, unsigned images) {
    static_assert(VB <= AXW && V % PE == 0, "a value must fit a beat");
    for (unsigned img = 0; img < images; img++) {
        for (unsigned f = 0; f < V / PE; f++) {
            const ap_uint<PE * VB> word = in.read();
            for (unsigned e = 0; e < PE; e++) {
#pragma HLS PIPELINE II=1
                const ap_uint<VB> raw = word(e * VB + VB - 1, e * VB);
                axis_word<AXW> beat;
                beat.data = SIGNED ? ap_uint<AXW>(ap_int<AXW>(ap_int<VB>(raw))) : ap_uint<AXW>(raw);
                beat.keep = -1;
                beat.strb = -1;
                beat.last = (img + 1 == images) && (f + 1 == V / PE) && (e + 1 == PE);
                out.write(beat);
            }
        }
    }
}

}  // namespace bhvit
