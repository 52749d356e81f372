//! iaso-probe library.
