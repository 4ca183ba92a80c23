//! The minting pause's row exists from the start (`false`), so every wallet
//! actor's reserve transaction can take a shared lock on it and a pause
//! request, an update of that row, waits for the reserves in flight: a row
//! that does not exist cannot be locked. A pause set before this migration
//! is kept.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::prelude::ChronoUtc;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let seed = Query::insert()
            .into_table(SystemFlags::Table)
            .columns([SystemFlags::Name, SystemFlags::Value, SystemFlags::UpdatedBy, SystemFlags::UpdatedAt])
            .values_panic(["minting_paused".into(), "false".into(), "migration".into(), ChronoUtc::now().into()])
            .on_conflict(OnConflict::column(SystemFlags::Name).do_nothing().to_owned())
            .to_owned();
        manager.exec_stmt(seed).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // An unpaused row means what no row meant; a pause set since is kept.
        let unseed = Query::delete()
            .from_table(SystemFlags::Table)
            .and_where(Expr::col(SystemFlags::Name).eq("minting_paused"))
            .and_where(Expr::col(SystemFlags::Value).eq("false"))
            .to_owned();
        manager.exec_stmt(unseed).await
    }
}

#[derive(DeriveIden)]
enum SystemFlags {
    Table,
    Name,
    Value,
    UpdatedBy,
    UpdatedAt,
}
