//! Reductions over dimensions (and the ops normalising along one, like softmax).

mod max;
mod mean;
mod softmax;
mod sum;
