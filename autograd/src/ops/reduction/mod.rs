//! Reductions over dimensions (and the ops normalising or scanning along one, like softmax
//! and cumsum).

mod cumsum;
mod logsumexp;
mod max;
mod max_dim;
mod mean;
mod norm;
mod softmax;
mod sort;
mod sum;
