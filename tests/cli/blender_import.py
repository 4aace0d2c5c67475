"""Imports a GLB into Blender and prints what Blender made of it, as one JSON line; fails (an
exception, so `--python-exit-code 1` makes Blender exit with 1) when Blender made no mesh of it, or
a mesh with other than the triangles the file gives it.

Run by tests/cli/engines.rs and .ci/run as
`blender -b --factory-startup --python-exit-code 1 --python blender_import.py -- FILE.glb`.
"""

import json
import struct
import sys

import numpy

# Debian's Blender 3.4 glTF importer still says numpy.bool, which numpy 1.24 removed.
if not hasattr(numpy, "bool"):
    numpy.bool = bool

import bpy  # noqa: E402



def read_glb(path):
    """The GLB's bytes, its JSON and where its binary chunk's data starts."""
    data = open(path, "rb").read()
    length = struct.unpack_from("<I", data, 12)[0]
    return data, json.loads(data[20 : 20 + length]), 20 + length + 8


def glb_tangents(data, gltf, binary):
    """The positions, UVs and TANGENTs of each glTF mesh that has tangents, by mesh name, read
    from the file itself (Blender's importer does not keep them)."""

    def read(index, width):
        accessor = gltf["accessors"][index]
        view = gltf["bufferViews"][accessor["bufferView"]]
        offset = binary + view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
        values = numpy.frombuffer(
            data, dtype="<f4", count=accessor["count"] * width, offset=offset
        )
        return values.reshape(-1, width)

    meshes = {}
    for mesh in gltf["meshes"]:
        attributes = mesh["primitives"][0]["attributes"]
        if "TANGENT" in attributes:
            meshes[mesh["name"]] = (
                read(attributes["POSITION"], 3),
                read(attributes["TEXCOORD_0"], 2),
                read(attributes["TANGENT"], 4),
            )
    return meshes


def glb_triangles(gltf):
    """The triangles of each glTF mesh, by mesh name, as the file gives them."""
    return {
        mesh["name"]: sum(
            gltf["accessors"][primitive["indices"]]["count"] // 3
            for primitive in mesh["primitives"]
        )
        for mesh in gltf["meshes"]
    }


def tangents_agree(mesh, written):
    """How many of the mesh's corners Blender's own MikkTSpace tangents (from its UVs and the
    imported normals) were compared with the file's, and how many agree (within 8 degrees and
    the same bitangent sign). The file is Y up, Blender Z up: (x, y, z) -> (x, -z, y); Blender's
    v is glTF's 1 - v."""
    positions, uvs, tangents = written
    table = {}
    for p, t, tangent in zip(positions, uvs, tangents):
        key = tuple(round(float(c), 4) for c in (p[0], -p[2], p[1], t[0], 1.0 - t[1]))
        table[key] = (tangent[0], -tangent[2], tangent[1], tangent[3])
    mesh.calc_tangents()
    layer = mesh.uv_layers.active.data
    compared = agree = 0
    for loop in mesh.loops:
        co = mesh.vertices[loop.vertex_index].co
        uv = layer[loop.index].uv
        key = tuple(round(c, 4) for c in (co.x, co.y, co.z, uv[0], uv[1]))
        ours = table.get(key)
        if ours is None:
            continue
        compared += 1
        cosine = sum(a * b for a, b in zip(loop.tangent, ours[:3]))
        if cosine > 0.99 and loop.bitangent_sign == ours[3]:
            agree += 1
    return {"corners": len(mesh.loops), "compared": compared, "agree": agree}


path = sys.argv[sys.argv.index("--") + 1]
data, gltf, binary = read_glb(path)
written_tangents = glb_tangents(data, gltf, binary)
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=path)
objects = []
for obj in bpy.data.objects:
    entry = {"name": obj.name, "parent": obj.parent.name if obj.parent else None}
    if obj.type == "MESH":
        world = [obj.matrix_world @ v.co for v in obj.data.vertices]
        entry["faces"] = len(obj.data.polygons)
        entry["min"] = [min(p[k] for p in world) for k in range(3)]
        entry["max"] = [max(p[k] for p in world) for k in range(3)]
        materials = []
        for slot in obj.material_slots:
            material = slot.material
            bsdf = material.node_tree.nodes.get("Principled BSDF")
            base = bsdf.inputs["Base Color"]
            # A tangent-space normal map: an image into a Normal Map node into the BSDF.
            normal_maps = [
                link.from_node
                for link in bsdf.inputs["Normal"].links
                if link.from_node.type == "NORMAL_MAP"
            ]
            materials.append(
                {
                    "name": material.name,
                    "roughness": bsdf.inputs["Roughness"].default_value,
                    "metallic": bsdf.inputs["Metallic"].default_value,
                    "base_color_texture": any(
                        link.from_node.type == "TEX_IMAGE" for link in base.links
                    ),
                    "normal_texture": any(
                        node.space == "TANGENT"
                        and any(
                            link.from_node.type == "TEX_IMAGE"
                            for link in node.inputs["Color"].links
                        )
                        for node in normal_maps
                    ),
                }
            )
        entry["materials"] = materials
        if obj.data.name in written_tangents:
            entry["tangents"] = tangents_agree(obj.data, written_tangents[obj.data.name])
    objects.append(entry)
print("BLENDER_IMPORT " + json.dumps({"objects": objects}))
triangles = glb_triangles(gltf)
meshes = [o for o in bpy.data.objects if o.type == "MESH"]
if not meshes:
    raise RuntimeError(f"{path}: Blender made no mesh of it")
for obj in meshes:
    written = triangles.get(obj.data.name)
    if written != len(obj.data.polygons):
        raise RuntimeError(
            f"{path}: Blender's mesh {obj.data.name} has {len(obj.data.polygons)} faces, "
            f"the file {written}"
        )
