//! Rule counters read from a back end's dump.
