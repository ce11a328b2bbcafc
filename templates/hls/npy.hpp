// Minimal .npy reader / writer for the C simulation testbenches: little-endian
// int64 ('<i8'), C order, any rank.  Enough for integer streams; no pickles.
#pragma once
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace npy {

struct Array {
    std::vector<size_t> shape;
    std::vector<int64_t> data;
};

inline Array load(const std::string &path) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot open " + path);
    char magic[8];
    if (std::fread(magic, 1, 8, f) != 8 || std::string(magic + 1, 5) != "NUMPY") {
        std::fclose(f);
        throw std::runtime_error(path + ": not a .npy file");
    }
    size_t hlen = 0;
    if (magic[6] == 1) {
        unsigned char b[2];
        if (std::fread(b, 1, 2, f) != 2) throw std::runtime_error(path + ": truncated header");
        hlen = b[0] | (b[1] << 8);
    } else {
        unsigned char b[4];
        if (std::fread(b, 1, 4, f) != 4) throw std::runtime_error(path + ": truncated header");
        hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (size_t(b[3]) << 24);
    }
    std::string header(hlen, ' ');
    if (std::fread(&header[0], 1, hlen, f) != hlen) throw std::runtime_error(path + ": truncated header");
    if (header.find("'<i8'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos) {
        std::fclose(f);
        throw std::runtime_error(path + ": only C-order int64 ('<i8') arrays are supported");
    }
    Array a;
    size_t p = header.find('(') + 1, q = header.find(')');
    size_t n = 1;
    while (p < q) {
        size_t e = header.find_first_of(",)", p);
        std::string tok = header.substr(p, e - p);
        if (tok.find_first_not_of(' ') != std::string::npos) {
            a.shape.push_back(std::stoul(tok));
            n *= a.shape.back();
        }
        p = e + 1;
    }
    a.data.resize(n);
    if (std::fread(a.data.data(), sizeof(int64_t), n, f) != n) {
        std::fclose(f);
        throw std::runtime_error(path + ": fewer values than its shape says");
    }
    std::fclose(f);
    return a;
}

inline void save(const std::string &path, const std::vector<size_t> &shape, const std::vector<int64_t> &data) {
    std::string dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (";
    for (size_t s : shape) dict += std::to_string(s) + ", ";
    dict += "), }";
    size_t total = 10 + dict.size() + 1;
    dict += std::string((64 - total % 64) % 64, ' ') + "\n";
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write " + path);
    const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
    std::fwrite(magic, 1, 8, f);
    unsigned char hl[2] = {static_cast<unsigned char>(dict.size() & 0xff), static_cast<unsigned char>(dict.size() >> 8)};
    std::fwrite(hl, 1, 2, f);
    std::fwrite(dict.data(), 1, dict.size(), f);
    std::fwrite(data.data(), sizeof(int64_t), data.size(), f);
    std::fclose(f);
}

}  // namespace npy
