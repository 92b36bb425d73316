//! One module per impersonated service, plus the fault rules shared by all of them.

mod faults;
mod novofon;
mod pyrus;
mod smtp;
mod telegram;
mod timepad;
