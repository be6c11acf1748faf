// An engine's run of sequences against the integer engine, every op of every position: what the
// transformer tests of the SystemC model and the RTL both check.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "qathw/model/bundle.h"
#include "qathw/verify/engine.h"

namespace qathw::test {

// Requires every op the run observes to equal `want` (the integer engine's) element by element,
// and every op it does not observe to be a quantizer fused into the linear layer after it (its
// codes stay inside). Returns the ops observed in the last sequence.
inline std::size_t expect_ops_equal(const model::Bundle& b, const std::string& target,
                                    const verify::EngineRun& run, const std::vector<model::OpOutputs>& want) {
  const model::Graph& g = b.graph;
  EXPECT_EQ(run.outputs.size(), want.size());
  std::size_t observed = 0;
  for (std::size_t s = 0; s < run.outputs.size() && s < want.size(); ++s) {
    observed = 0;
    for (std::size_t i = 0; i < g.ops.size(); ++i) {
      const model::Op& op = g.ops[i];
      if (op.type == model::OpType::Quantize && run.outputs[s][i].empty()) {  // fused: its codes stay inside
        EXPECT_TRUE(i + 1 < g.ops.size() && g.ops[i + 1].type == model::OpType::Linear) << op.name;
        continue;
      }
      ++observed;
      const std::string where = target + " sequence " + std::to_string(s) + " op " + op.name;
      EXPECT_EQ(run.outputs[s][i].size(), g.tensor(op.output).size()) << where;
      if (run.outputs[s][i].size() != want[s][i].size()) return observed;
      for (std::size_t k = 0; k < want[s][i].size(); ++k)
        if (run.outputs[s][i][k] != want[s][i][k]) {
          ADD_FAILURE() << where << " position " << k / g.tensor(op.output).features << " feature "
                        << k % g.tensor(op.output).features << ": " << run.outputs[s][i][k] << ", integer engine "
                        << want[s][i][k];
          return observed;
        }
    }
  }
  return observed;
}

}  // namespace qathw::test
