//! stub
pub struct JdlTable;
pub struct TableGrid;
