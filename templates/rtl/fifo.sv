// AXI-Stream (valid/ready) FIFO for the stitched top: WIDTH-bit words, DEPTH entries
// (any DEPTH >= 2), full throughput, registered flags; `count` is the occupancy, which the
// RTL simulation records to size the FIFOs.  Memory without reset.
//
// Up to LUTRAM_DEPTH entries or LUTRAM_BITS bits (hw.resources.fifo_parts) the memory is read
// asynchronously (distributed RAM: LUTs).
// Deeper FIFOs (the image-sized ones that balance a join against a map-buffering branch) keep
// their words in a RAM with a registered read, which synthesis maps to block RAM, and hand them
// on through a 3-entry skid register: a RAM read is issued only while the skid has room for it
// and for the read already under way, so the output keeps one word per cycle.
module bhvit_fifo #(
    parameter int WIDTH = 8,
    parameter int DEPTH = 2,
    parameter int LUTRAM_DEPTH = 128,
    parameter int LUTRAM_BITS = 8192
) (
    input  logic             clk,
    input  logic             rst_n,
    input  logic [WIDTH-1:0] in0_tdata,
    input  logic             in0_tvalid,
    output logic             in0_tready,
    output logic [WIDTH-1:0] out_tdata,
    output logic             out_tvalid,
    input  logic             out_tready,
    output logic [$clog2(DEPTH+1)-1:0] count
);
    localparam int AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam int CW = $clog2(DEPTH + 1);
    logic [AW-1:0] rd, wr;
    logic push, pop;

    assign in0_tready = (count != CW'(DEPTH));
    assign push = in0_tvalid && in0_tready;
    assign pop = out_tvalid && out_tready;

    always_ff @(posedge clk) begin
        if (!rst_n) count <= '0;
        else if (push && !pop) count <= count + 1'b1;
        else if (pop && !push) count <= count - 1'b1;
    end
    always_ff @(posedge clk) begin
        if (!rst_n) wr <= '0;
        else if (push) wr <= (wr == AW'(DEPTH - 1)) ? '0 : wr + 1'b1;
    end
    generate
        if (DEPTH <= LUTRAM_DEPTH || DEPTH * WIDTH <= LUTRAM_BITS) begin : g_lutram
            // without the attribute, synthesis folds the read-address register into the read
            // port and builds even a few hundred words from block RAM
            (* ram_style = "distributed" *) logic [WIDTH-1:0] mem [DEPTH];
            always_ff @(posedge clk) begin
                if (push) mem[wr] <= in0_tdata;
            end
            assign out_tvalid = (count != '0);
            assign out_tdata = mem[rd];
            always_ff @(posedge clk) begin
                if (!rst_n) rd <= '0;
                else if (pop) rd <= (rd == AW'(DEPTH - 1)) ? '0 : rd + 1'b1;
            end
        end else begin : g_bram
            (* ram_style = "block" *) logic [WIDTH-1:0] mem [DEPTH];
            always_ff @(posedge clk) begin
                if (push) mem[wr] <= in0_tdata;
            end
            logic [CW-1:0] ram_n;          // words in the RAM not yet read
            logic issue, inflight;         // a RAM read now / its word lands in the skid now
            logic [WIDTH-1:0] q;           // the registered RAM read
            logic [WIDTH-1:0] skid [3];
            logic [1:0] s_n, s_rd, s_wr;
            assign issue = (ram_n != '0) && ({1'b0, s_n} + {2'b0, inflight} < 3'd3);
            assign out_tvalid = (s_n != '0);
            assign out_tdata = skid[s_rd];
            always_ff @(posedge clk) begin
                if (issue) q <= mem[rd];
                if (inflight) skid[s_wr] <= q;
            end
            always_ff @(posedge clk) begin
                if (!rst_n) begin
                    rd <= '0;
                    ram_n <= '0;
                    inflight <= 1'b0;
                    s_n <= '0;
                    s_rd <= '0;
                    s_wr <= '0;
                end else begin
                    if (issue) rd <= (rd == AW'(DEPTH - 1)) ? '0 : rd + 1'b1;
                    if (push && !issue) ram_n <= ram_n + 1'b1;
                    else if (issue && !push) ram_n <= ram_n - 1'b1;
                    inflight <= issue;
                    if (inflight) s_wr <= (s_wr == 2'd2) ? '0 : s_wr + 1'b1;
                    if (pop) s_rd <= (s_rd == 2'd2) ? '0 : s_rd + 1'b1;
                    if (inflight && !pop) s_n <= s_n + 1'b1;
                    else if (pop && !inflight) s_n <= s_n - 1'b1;
                end
            end
        end
    endgenerate
endmodule
