"""The sql backend's two tables."""

from __future__ import annotations

from sqlalchemy import BigInteger, MetaData, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

REVISION = "revision"
# Keys compared byte for byte: MySQL's default collation would merge keys differing in case.
KEY_128 = String(128).with_variant(mysql.VARCHAR(128, collation="utf8mb4_bin"), "mysql", "mariadb")
KEY_256 = String(256).with_variant(mysql.VARCHAR(256, collation="utf8mb4_bin"), "mysql", "mariadb")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})


class ConfigValueRow(Base):
    """gray_config_value: the current value of each config key."""

    __tablename__ = "gray_config_value"

    app_name: Mapped[str] = mapped_column(KEY_128, primary_key=True)
    environment: Mapped[str] = mapped_column(KEY_128, primary_key=True)
    group_name: Mapped[str] = mapped_column(KEY_128, primary_key=True)
    config_key: Mapped[str] = mapped_column(KEY_256, primary_key=True)
    value: Mapped[str] = mapped_column(Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"))
    """Up to 1 MiB: LONGTEXT on MySQL, whose TEXT stops at 64 KiB."""
    updated_by: Mapped[str] = mapped_column(String(128))


class ConfigRevisionRow(Base):
    """gray_config_revision: bumped by every publish, so other processes know to reload."""

    __tablename__ = "gray_config_revision"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
