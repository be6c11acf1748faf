// The arithmetic core: every number format and integer rule of the accelerator, defined once.
#pragma once

#include "qathw/arith/core.h"
#include "qathw/arith/dot.h"
#include "qathw/arith/feature_map.h"
#include "qathw/arith/fixed_point.h"
#include "qathw/arith/layer.h"
#include "qathw/arith/pack.h"
#include "qathw/arith/quantize.h"
#include "qathw/arith/transformer.h"
