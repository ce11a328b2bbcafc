// The BHViT HLS kernel library: every kernel header, for the generated node sources.
#pragma once
#include "bhvit_attention.hpp"
#include "bhvit_binary.hpp"
#include "bhvit_fixed.hpp"
#include "bhvit_int.hpp"
#include "bhvit_stream.hpp"
#include "bhvit_tokens.hpp"
